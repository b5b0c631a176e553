"""Simulated active learning on SST-2: does choosing what to label beat labelling at random?

The true labels are the oracle. Each seed starts from the same 100 random labelled sentences;
each round fine-tunes a fresh model (the bundled MiniLM) on everything labelled so far,
scores the unlabeled pool and lets a strategy (`sentitune.selection`) pick 100 more; six
rounds. Accuracy is measured on the SST-2 dev set after every round.

Goal (issue 29): the best strategy reaches random sampling's final accuracy with at most
60% of random's labels (anchor: Schroeder et al. 2022, uncertainty sampling strong for
transformers).

Made cheap for a shared 2-core CPU, and said so in the JSON: max_length 64; a pool of
3,000 SST-2 training sentences (rows of at least 6 words: SST-2's train file also holds
phrases); a plain fine-tuning loop with a fixed epoch budget (epochs shrink as the labelled
set grows; no validation split, which a 100-label project would not have either).
Resumable: every finished round is saved, a rerun continues from the last one.

    nohup flock /work/jobs/cpu.lock python benchmarks/active_learning.py \
        --strategies margin random diverse --pool 2000 \
        --output benchmarks/results/active_learning-minilm-cpu.json > /work/jobs/al.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine  # noqa: E402

from sentitune import files  # noqa: E402
from sentitune.selection import STRATEGIES, choose, pooled_outputs  # noqa: E402

LABELS = ["negative", "positive"]
MAX_LENGTH, BATCH_SIZE, LEARNING_RATE = 64, 16, 1e-4


def epochs_for(labelled: int) -> float:
    """More passes over few examples: about 1,000-2,000 examples seen per run."""
    return float(max(3, min(10, math.ceil(1000 / labelled))))


def load_data(data_dir: Path, pool_size: int, dev_size: int | None) -> tuple:
    """The unlabeled pool (SST-2 train sentences: rows of 6+ words, as the file also holds
    phrases) and the dev sentences accuracy is measured on."""
    train = pd.read_csv(data_dir / "sst2" / "train.tsv", sep="\t", quoting=3)
    dev = pd.read_csv(data_dir / "sst2" / "dev.tsv", sep="\t", quoting=3)
    sentences = train[train["sentence"].str.split().str.len() >= 6]
    pool = sentences.drop_duplicates("sentence").sample(n=pool_size, random_state=0)
    if dev_size is not None:
        dev = dev.sample(n=min(dev_size, len(dev)), random_state=0)
    return pool.reset_index(drop=True), dev.reset_index(drop=True)


def fine_tune(texts: list[str], labels: list[int], model_name: str, seed: int):
    """A fresh classifier fine-tuned on the labelled rows: AdamW, linear warmup and decay.
    A plain loop, not `sentitune.train`: a run directory's reports, calibration and saved
    weights cost more than the training itself at a few hundred sentences, 75 times."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    from sentitune.model import load_model, load_tokenizer

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(model_name)
    model = load_model(model_name, LABELS, "binary")
    # Fused AdamW, as `sentitune.train` uses: the plain one's step costs several times more.
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=0.01,
                                  fused=True)
    order = np.random.default_rng(seed)
    batches_per_epoch = math.ceil(len(texts) / BATCH_SIZE)
    total = int(epochs_for(len(texts))) * batches_per_epoch
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
    model.train()
    for _ in range(int(epochs_for(len(texts)))):
        shuffled = order.permutation(len(texts))
        for start in range(0, len(texts), BATCH_SIZE):
            rows = shuffled[start:start + BATCH_SIZE]
            inputs = tokenizer([texts[i] for i in rows], truncation=True, padding=True,
                               max_length=MAX_LENGTH, return_tensors="pt")
            loss = model(**inputs, labels=torch.tensor([labels[i] for i in rows])).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    return model.eval(), tokenizer


def score(model, tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, probabilities) of `texts`, through `sentitune.selection`."""
    from scipy.special import softmax

    def batches():
        for start in range(0, len(texts), 128):
            yield range(start, min(start + 128, len(texts))), tokenizer(
                texts[start:start + 128], truncation=True, padding=True,
                max_length=MAX_LENGTH, return_tensors="pt")

    vectors, logits = pooled_outputs(model, batches())
    return vectors, softmax(logits.astype(np.float64), axis=1)


def train_and_measure(rows: pd.DataFrame, data: tuple, seed: int,
                      unlabeled: np.ndarray | None, model_name: str) -> dict:
    """Train on `rows`; dev accuracy, and the pool's probabilities and embeddings for the
    next pick unless `unlabeled` is None."""
    pool, dev = data
    started = time.perf_counter()
    model, tokenizer = fine_tune(list(rows["sentence"]), list(rows["label"]), model_name, seed)
    measured: dict = {"train_s": round(time.perf_counter() - started, 1)}
    _, dev_probs = score(model, tokenizer, list(dev["sentence"]))
    measured["dev_accuracy"] = float((dev_probs.argmax(1) == dev["label"].to_numpy()).mean())
    if unlabeled is not None:
        measured["embeddings"], measured["probs"] = score(
            model, tokenizer, list(pool["sentence"].iloc[unlabeled]))
    return measured


def start_model(result: dict, seed: int, args, data, work: Path, save) -> dict:
    """The seed's 100 random labelled sentences, its model's dev accuracy and its scores of
    the whole pool (kept in WORK/start-SEED.npz): every strategy's first pick."""
    pool = data[0]
    cache = work / f"start-{seed}.npz"
    start = result["starts"].get(str(seed))
    if start is None or not cache.exists():
        picked = np.random.default_rng(seed).permutation(len(pool))[:args.start]
        measured = train_and_measure(pool.iloc[picked], data, seed, np.arange(len(pool)),
                                     args.model)
        np.savez(cache, probs=measured["probs"], embeddings=measured["embeddings"])
        start = {"picked": [int(i) for i in picked], "labels": len(picked),
                 "dev_accuracy": round(measured["dev_accuracy"], 4),
                 "train_s": measured["train_s"]}
        result["starts"][str(seed)] = start
        save()
        print(f"seed {seed} start: {len(picked)} labels, dev accuracy "
              f"{start['dev_accuracy']:.4f}", flush=True)
    return dict(np.load(cache))


def run_arm(result: dict, strategy: str, seed: int, args, data, work: Path, save) -> None:
    pool = data[0]
    arm = result["arms"].setdefault(f"{strategy}-{seed}", {"strategy": strategy, "seed": seed,
                                                           "rounds": []})
    scores = None
    if not arm["rounds"]:
        scores = start_model(result, seed, args, data, work, save)
    labelled = list(result["starts"][str(seed)]["picked"])
    for finished in arm["rounds"]:
        labelled += finished["picked"]
    blind = strategy == "random"  # picks without the model's scores: the pool goes unscored
    while len(arm["rounds"]) < args.rounds:
        unlabeled = np.setdiff1d(np.arange(len(pool)), labelled)
        if blind:
            scores = {"probs": np.full((len(unlabeled), len(LABELS)), 1 / len(LABELS))}
        elif scores is None:  # resumed mid-arm: the last round's model, trained again
            scores = train_and_measure(pool.iloc[labelled], data, seed, unlabeled, args.model)
        elif len(scores["probs"]) == len(pool):  # the start model scored the whole pool
            scores = {k: v[unlabeled] for k, v in scores.items() if k != "dev_accuracy"}
        local = choose(scores["probs"], args.step, strategy,
                       embeddings=scores.get("embeddings"),
                       seed=seed * 1000 + len(arm["rounds"]))
        picked = [int(i) for i in unlabeled[local]]
        labelled += picked
        last = len(arm["rounds"]) + 1 == args.rounds
        rest = None if last or blind else np.setdiff1d(np.arange(len(pool)), labelled)
        scores = train_and_measure(pool.iloc[labelled], data, seed, rest, args.model)
        arm["rounds"].append({"labels": len(labelled),
                              "dev_accuracy": round(scores["dev_accuracy"], 4),
                              "train_s": scores["train_s"], "picked": picked})
        print(f"{strategy}-{seed} round {len(arm['rounds'])}: {len(labelled)} labels, dev "
              f"accuracy {scores['dev_accuracy']:.4f} ({scores['train_s']} s training)",
              flush=True)
        save()


def summarise(result: dict, args) -> dict:
    """Mean (and std) dev accuracy per strategy and label count, and the goal."""
    curves: dict[str, dict] = {}
    for strategy in args.strategies:
        arms = [a for a in result["arms"].values()
                if a["strategy"] == strategy and len(a["rounds"]) == args.rounds]
        if len(arms) < len(args.seeds):
            continue
        points = [[result["starts"][str(a["seed"])]["dev_accuracy"]]
                  + [r["dev_accuracy"] for r in a["rounds"]] for a in arms]
        counts = [args.start + args.step * i for i in range(args.rounds + 1)]
        curves[strategy] = {"labels": counts,
                            "mean": np.round(np.mean(points, 0), 4).tolist(),
                            "std": np.round(np.std(points, 0), 4).tolist()}
    summary: dict = {"curves": curves}
    if "random" not in curves or len(curves) < 2:
        return summary
    target = curves["random"]["mean"][-1]
    random_labels = curves["random"]["labels"][-1]
    reach = {}
    for strategy, curve in curves.items():
        hit = next((n for n, acc in zip(curve["labels"], curve["mean"], strict=True)
                    if acc >= target), None)
        reach[strategy] = {"labels_to_reach_random_final": hit,
                           "share_of_random_labels": None if hit is None
                           else round(hit / random_labels, 3)}
    # Fewest labels to reach random's final accuracy; a tie goes to the better final one.
    best = min((s for s in reach if s != "random"
                and reach[s]["share_of_random_labels"] is not None),
               key=lambda s: (reach[s]["share_of_random_labels"], -curves[s]["mean"][-1]),
               default=None)
    share = reach[best]["share_of_random_labels"] if best else None
    summary |= {"random_final_accuracy": target, "reach": reach, "best_strategy": best,
                "goal": "best strategy reaches random's final accuracy with <= 60% of its "
                        "labels",
                "goal_met": share is not None and share <= 0.6}
    return summary


def plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for strategy, curve in summary["curves"].items():
        mean, std = np.array(curve["mean"]), np.array(curve["std"])
        axes.plot(curve["labels"], mean, marker="o", label=strategy)
        axes.fill_between(curve["labels"], mean - std, mean + std, alpha=0.15)
    if "random_final_accuracy" in summary:
        axes.axhline(summary["random_final_accuracy"], color="grey", linestyle=":",
                     label="random's final accuracy")
    axes.set_xlabel("labelled sentences")
    axes.set_ylabel("SST-2 dev accuracy")
    axes.set_title("Active learning on SST-2 (MiniLM, mean of seeds)")
    axes.legend()
    figure.tight_layout()
    with files.atomic_path(path) as partial:
        figure.savefig(partial, format="png", dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="benchmarks/results/active_learning-minilm-cpu.json")
    parser.add_argument("--work-dir", default="/tmp/sentitune-active-learning")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--start", type=int, default=100)
    parser.add_argument("--step", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--pool", type=int, default=3000)
    parser.add_argument("--dev", type=int, help="seeded subset of SST-2 dev (default: all)")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="torch threads (1 on a machine other jobs keep busy: threads "
                             "waiting for a descheduled sibling cost more than they give)")
    parser.add_argument("--model", default="minilm",
                        help="model to fine-tune (a tiny local one checks the script runs)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    data_dir = Path(os.environ.get("SENTITUNE_DATA_DIR", "../shared/data"))
    pool, dev = load_data(data_dir, args.pool, args.dev)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    data = (pool, dev)
    output = Path(args.output)
    # Arms of other strategies and seeds can join a result; other sizes start it afresh.
    settings = {k: getattr(args, k) for k in ("start", "step", "rounds", "pool", "dev", "model")}
    result = json.loads(output.read_text()) if output.exists() else {}
    if result.get("settings") != settings:
        result = {"settings": settings, "starts": {}, "arms": {}}
    result["setup"] = {
        "model": args.model, "max_length": MAX_LENGTH, "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE, "schedule": "AdamW, 10% warmup, linear decay",
        "epochs": "max(3, min(10, ceil(1000 / labelled))), the last epoch's model kept",
        "pool": f"{args.pool} SST-2 train sentences of 6+ words (seeded sample)",
        "dev": f"{len(dev)} SST-2 dev sentences", "oracle": "the true labels"}
    if "entropy" not in args.strategies:
        # Two classes: entropy and margin both order rows by the top probability alone.
        result["setup"]["entropy"] = "not run: with two classes it picks exactly margin's rows"
    load_start = os.getloadavg()
    started = time.perf_counter()

    def save() -> None:
        result["machine"] = machine(load_start)
        result["elapsed_s_this_session"] = round(time.perf_counter() - started, 1)
        result["summary"] = summarise(result, args)
        files.write_json(output, result)

    # Strategy by strategy, so a session that ends early leaves whole curves behind.
    for strategy in args.strategies:
        for seed in args.seeds:
            run_arm(result, strategy, seed, args, data, work, save)
    save()
    plot(result["summary"], output.with_suffix(".png"))
    print({k: v for k, v in result["summary"].items() if k != "curves"}, flush=True)


if __name__ == "__main__":
    main()
