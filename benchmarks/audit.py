"""Does `sentitune audit` find wrong labels, and does removing them help training?

    SENTITUNE_DATA_DIR=../shared/data flock /work/jobs/cpu.lock \
        python benchmarks/audit.py [--rows 4000] [--seeds 0 1 2] [--epochs 1] [--real-rows all]

1. A seeded, stratified subset of SST-2 training rows (default 4,000) is embedded once by the
   frozen bundled MiniLM (mean-pooled); per seed, 10% of its labels are flipped at random and
   the audit's fast mode (5-fold logistic regression on the embeddings, then cleanlab) ranks
   the rows. Measured: precision and recall of cleanlab's flagged rows against the flipped
   ones, and the precision at the first cut of the label-quality ranking that reaches 60%
   recall (the goal: >= 0.8).
2. Dev accuracy (SST-2 dev, 872 sentences) of the bundled MiniLM fine-tuned with a small, fast
   recipe (max length 64, batch 32, lr 5e-5) on the original, the noisy and the cleaned
   (flagged rows dropped) labels; the goal: cleaning recovers at least half of what the
   noise cost. The same three arms with a logistic regression on the frozen embeddings too.
3. The fast audit on the real SST-2 training set (all 67,349 rows, or --real-rows N):
   the top suspected errors, for a person to read.

Resumable: finished parts are read back from the partial JSON and skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import emit, machine

RESULTS = Path(__file__).resolve().parent / "results" / "audit-minilm-cpu.json"
FLIP_SHARE = 0.10
TOP_REAL = 60


def _sst2(data_dir: Path, split: str) -> pd.DataFrame:
    frame = pd.read_csv(data_dir / "sst2" / f"{split}.tsv", sep="\t", quoting=3)
    return frame.rename(columns={"sentence": "text"})[["text", "label"]]


def _rows(frame: pd.DataFrame, labels: np.ndarray, model: str):
    from sentitune.auditing.rows import AuditRows

    return AuditRows(frame.assign(label=labels).reset_index(drop=True),
                     ["negative", "positive"], "binary", "sst2 subset", model, 64)


def precision_at_recall(quality: np.ndarray, flipped: np.ndarray, recall: float) -> dict:
    """Precision of the lowest-quality rows at the first cut reaching `recall` of `flipped`."""
    order = np.argsort(quality, kind="stable")
    hits = np.cumsum(flipped[order])
    k = int(np.searchsorted(hits, recall * flipped.sum())) + 1
    return {"recall": round(float(hits[k - 1] / flipped.sum()), 4),
            "precision": round(float(hits[k - 1] / k), 4), "flagged": k}


def _linear_dev(train_x, train_y, dev_x, dev_y, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000,
                                                               random_state=seed))
    return round(float(model.fit(train_x, train_y).score(dev_x, dev_y)), 4)


def _finetuned_dev(frame: pd.DataFrame, labels: np.ndarray, name: str, args) -> float:
    """Dev accuracy of MiniLM fine-tuned on (frame, labels); the run is kept for --resume."""
    from sentitune.config import RunConfig
    from sentitune.run import Run
    from sentitune.training import train

    out = Path(args.runs_dir) / name
    if (out / "metrics.json").is_file():
        return Run.open(out).metrics["validation"]["accuracy"]
    data = Path(args.runs_dir) / f"{name}.csv"
    data.parent.mkdir(parents=True, exist_ok=True)
    frame.assign(label=labels).to_csv(data, index=False)  # 0/1, as SST-2's dev file
    config = RunConfig().replace(
        dataset=str(data), validation_data=str(Path(args.data_dir) / "sst2" / "dev.tsv"),
        model=args.model, max_length=64, epochs=args.epochs, batch_size=32, learning_rate=5e-5,
        warmup_ratio=0.06, seed=42, checkpoint_every=None)
    result = train(config, out, overwrite=True, progress=False)
    return round(float(result.metrics["validation"]["accuracy"]), 4)


def _found(rows, probs, flipped: np.ndarray, clean: np.ndarray) -> tuple[dict, np.ndarray]:
    """How well one mode's out-of-fold probabilities find the flipped rows; its flags."""
    from sentitune.auditing.issues import label_issues, quality_scores

    issues = label_issues(rows, probs)
    flagged = np.zeros(len(clean), bool)
    flagged[[i["row"] for i in issues]] = True
    found = int((flagged & flipped).sum())
    noisy = rows.targets()
    return {
        "flagged": int(flagged.sum()),
        "precision": round(found / max(1, flagged.sum()), 4),
        "recall": round(found / flipped.sum(), 4),
        "precision_at_recall_0.6": precision_at_recall(quality_scores(rows, probs), flipped, 0.6),
        "out_of_fold_accuracy_vs_noisy": round(float((probs.argmax(1) == noisy).mean()), 4),
        "relabelled_correctly": round(float((probs.argmax(1)[flagged & flipped]
                                             == clean[flagged & flipped]).mean()), 4),
    }, flagged


def noisy_seed(seed: int, frame, clean, embeddings, dev_x, dev_y, args,
               result: dict | None = None) -> dict:
    """One seed's flipped labels, audited by each of args.modes that `result` (an earlier
    session's, for this seed) lacks; the last mode's flags clean the data."""
    from sentitune.auditing.scores import finetuned_oof, linear_oof
    from sentitune.config import AuditConfig

    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(clean), bool)
    flipped[rng.choice(len(clean), round(FLIP_SHARE * len(clean)), replace=False)] = True
    noisy = np.where(flipped, 1 - clean, clean)
    rows = _rows(frame, noisy, args.model)
    result = result or {"seed": seed, "flipped": int(flipped.sum()), "modes": {}}
    for mode in args.modes:
        if mode in result["modes"] and mode != args.modes[-1]:  # the last one cleans
            continue
        started = time.perf_counter()
        if mode == "fast":
            probs = linear_oof(rows, embeddings, 5, seed)
        else:
            settings = AuditConfig(folds=5, epochs=args.epochs, max_length=64, seed=seed)
            probs = finetuned_oof(rows, settings)
        result["modes"][mode], flagged = _found(rows, probs, flipped, clean)
        result["modes"][mode]["seconds"] = round(time.perf_counter() - started, 1)
    keep = ~flagged  # the last mode's flags clean the data
    result["cleaned_by"] = args.modes[-1]
    cleaned_run = f"cleaned-{seed}-{args.modes[-1]}"
    result["dev_accuracy_linear"] = {
        "original": _linear_dev(embeddings, clean, dev_x, dev_y, seed),
        "noisy": _linear_dev(embeddings, noisy, dev_x, dev_y, seed),
        "cleaned": _linear_dev(embeddings[keep], noisy[keep], dev_x, dev_y, seed)}
    if args.epochs > 0:
        result["dev_accuracy_finetuned"] = {
            "noisy": _finetuned_dev(frame, noisy, f"noisy-{seed}", args),
            "cleaned": _finetuned_dev(frame[keep], noisy[keep], cleaned_run, args)}
    return result


def real_sst2(args) -> dict:
    from sentitune.auditing import audit

    rows = None if args.real_rows == "all" else int(args.real_rows)
    data = "sst2"
    if rows is not None:
        subset = _sst2(Path(args.data_dir), "train").sample(rows, random_state=0)
        data = str(Path(args.runs_dir) / f"sst2-train-{rows}.csv")
        subset.to_csv(data, index=False)
    started = time.perf_counter()
    result = audit(output=Path(args.runs_dir) / "audit-sst2-real", progress=False,
                   dataset=data, model=args.model, max_length=64, batch_size=128)
    return {"rows": result.report["counts"]["rows"], "seconds": round(time.perf_counter()
                                                                      - started, 1),
            "out_of_fold_accuracy": round(result.report["out_of_fold_accuracy"], 4),
            "counts": result.report["counts"],
            "top_suspected": [{k: i[k] for k in ("row", "text", "given_label",
                                                  "suggested_label", "confidence")}
                              for i in result.issues[:TOP_REAL]],
            "top_conflicting_duplicates": result.duplicates[:20]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--model", default="minilm", help="encoder (a tiny one in the tests)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=float, default=1.0,
                        help="fine-tuning epochs of the dev-accuracy arms; 0: linear only")
    parser.add_argument("--modes", nargs="+", default=["fast", "finetune"],
                        choices=["fast", "finetune"],
                        help="audit modes measured; the last one's flags clean the data")
    parser.add_argument("--real-rows", default="all", help="'all', a number, or 'skip'")
    parser.add_argument("--runs-dir", default="runs/bench/audit")
    parser.add_argument("--data-dir", default=os.environ.get("SENTITUNE_DATA_DIR",
                                                             "../shared/data"))
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    load_start = os.getloadavg()
    out = Path(args.output)
    result = json.loads(out.read_text()) if out.is_file() else {}
    result.setdefault("seeds", {})

    from sentitune.auditing.scores import embed
    from sentitune.dataset.splits import subset

    train = _sst2(Path(args.data_dir), "train")
    frame = subset(train, args.rows, 0, "binary", "train")
    dev = _sst2(Path(args.data_dir), "dev")
    started = time.perf_counter()
    embeddings = embed(list(frame["text"]), args.model, 64, 128)
    dev_x = embed(list(dev["text"]), args.model, 64, 128)
    result["embedding_seconds_per_1000_texts"] = round(
        1000 * (time.perf_counter() - started) / (len(frame) + len(dev)), 2)
    clean, dev_y = frame["label"].to_numpy(), dev["label"].to_numpy()
    if args.epochs > 0 and "original" not in result:
        result["original"] = {"dev_accuracy_finetuned": _finetuned_dev(frame, clean,
                                                                       "original", args)}
    for seed in args.seeds:
        earlier = result["seeds"].get(str(seed))
        if earlier is None or not set(args.modes) <= set(earlier["modes"]):
            result["seeds"][str(seed)] = noisy_seed(seed, frame, clean, embeddings, dev_x,
                                                    dev_y, args, earlier)
            emit(result, args.output)
    if args.real_rows != "skip" and "real_sst2" not in result:
        result["real_sst2"] = real_sst2(args)
    result["summary"] = summarize(result)
    result["setup"] = {"rows": args.rows, "flip_share": FLIP_SHARE, "folds": 5,
                       "embedder": f"{args.model}, frozen, mean-pooled",
                       "modes": args.modes,
                       "finetune_recipe": {"epochs": args.epochs, "max_length": 64,
                                           "batch_size": 32, "learning_rate": 5e-5}}
    result["machine"] = machine(load_start)
    emit(result, args.output)


def summarize(result: dict) -> dict:
    seeds = list(result["seeds"].values())
    mean = lambda values: round(float(np.mean(values)), 4)  # noqa: E731
    summary: dict = {}
    for mode in dict.fromkeys(m for s in seeds for m in s["modes"]):
        found = [s["modes"][mode] for s in seeds if mode in s["modes"]]
        summary[mode] = {
            "seeds": len(found),
            "precision": mean([f["precision"] for f in found]),
            "recall": mean([f["recall"] for f in found]),
            "precision_at_recall_0.6": mean([f["precision_at_recall_0.6"]["precision"]
                                             for f in found])}
    for kind in ("linear", "finetuned"):
        arms = [s[f"dev_accuracy_{kind}"] for s in seeds if f"dev_accuracy_{kind}" in s]
        if not arms:
            continue
        original = (result["original"]["dev_accuracy_finetuned"] if kind == "finetuned"
                    else mean([a["original"] for a in arms]))
        noisy, cleaned = mean([a["noisy"] for a in arms]), mean([a["cleaned"] for a in arms])
        cost = original - noisy
        summary[f"dev_accuracy_{kind}"] = {
            "seeds": len(arms), "cleaned_by": sorted({s["cleaned_by"] for s in seeds
                                                      if f"dev_accuracy_{kind}" in s}),
            "original": original, "noisy": noisy, "cleaned": cleaned,
            "share_of_noise_cost_recovered": round((cleaned - noisy) / cost, 3) if cost > 0
            else None}
    return summary


if __name__ == "__main__":
    main()
