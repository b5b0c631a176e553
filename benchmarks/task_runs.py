"""Beyond binary on CPU: the bundled MiniLM fine-tuned on SST-5, emotion and GoEmotions.

    SENTITUNE_DATA_DIR=../shared/data nice -n 10 python benchmarks/task_runs.py
        [--epochs 2] [--max-length 64] [--only sst5 goemotions] [--class-weights auto]
        [--runs DIR]

Each dataset is trained on a seeded subset of its training split (CPU-sized; GoEmotions
gets more rows for its 28 labels), validated on a seeded subset of its validation split,
then scored on a whole held-out split: SST-5 dev (the local copy has no test split, so
dev is also its validation set), emotion test and GoEmotions test. The learning rate is
the one of the `sst2-minilm` preset (1e-4, chosen there on SST-2), not tuned here.

Writes benchmarks/results/tasks-minilm-cpu.json, one record per dataset and class
weighting with its settings, command and runtimes, and prints it. Published full-data
BERT-base figures are given for scale only: these runs see a few percent of the training
data, for 2 epochs, with a model a fifth of BERT-base's size.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from common import machine

from sentitune import files
from sentitune.config import RunConfig, load_preset
from sentitune.dataset import load_eval_split
from sentitune.inference.classifier import Classifier
from sentitune.metrics import classification_metrics, multi_hot
from sentitune.run import Run, versions
from sentitune.training import train

RESULTS = Path(__file__).resolve().parent / "results" / "tasks-minilm-cpu.json"


@dataclass(frozen=True)
class Plan:
    train_samples: int
    val_samples: int | None  # None: the whole validation split
    scored_split: str
    headline: str
    reference: dict | None  # published full-data figure, for scale


DATASETS = {
    "sst5": Plan(2000, None, "validation", "accuracy", {
        "value": 0.53, "metric": "accuracy",
        "source": "BERT-base on full SST-5 (Munikar et al. 2019, ~0.53 fine-grained)"}),
    "emotion": Plan(2000, 1000, "test", "accuracy", None),
    "goemotions": Plan(3000, 2000, "test", "f1_macro", {
        "value": 0.46, "metric": "f1_macro",
        "source": "BERT-base on full GoEmotions, 28 labels (Demszky et al. 2020, Table 4)"}),
}
SETTINGS = {"model": "minilm", "batch_size": 32, "eval_batch_size": 128, "learning_rate": 1e-4}
SCALARS = ("accuracy", "f1_macro", "f1_weighted", "f1_micro", "f1_samples", "exact_match",
           "hamming_loss", "label_cardinality_true", "label_cardinality_pred", "loss")


def run_one(name: str, args: argparse.Namespace, runs: Path) -> dict:
    plan = DATASETS[name]
    settings = SETTINGS | {
        "dataset": name, "train_samples": plan.train_samples, "val_samples": plan.val_samples,
        "epochs": args.epochs, "max_length": args.max_length, "seed": args.seed,
        "class_weights": args.class_weights,
    }
    config = RunConfig().replace(**settings)
    run_dir = runs / (name if args.class_weights == "none" else f"{name}-weighted")
    # A finished run with exactly these settings is scored again, not retrained: an
    # interrupted benchmark resumes where it stopped.
    reused = (run_dir / "config.yaml").is_file() and load_preset(
        str(run_dir / "config.yaml")) == config
    if not reused:
        train(config, run_dir, overwrite=True, progress=False)

    classifier = Classifier.from_pretrained(run_dir)
    task, labels = classifier.task, classifier.labels
    frame, split = load_eval_split(name, plan.scored_split, labels, task)
    started = time.perf_counter()
    probs = classifier.predict_proba(list(frame["text"]))
    score_wall = time.perf_counter() - started
    y_true = (multi_hot(list(frame["label"]), len(labels)) if task == "multilabel"
              else np.asarray(frame["label"], dtype=int))
    thresholds = classifier.decision.label_thresholds
    found = classification_metrics(y_true, probs, task, labels,
                                   None if thresholds is None else np.asarray(thresholds))

    run = Run.open(run_dir)
    saved, facts = run.metrics, run.facts
    history = pd.read_csv(run_dir / "history.csv").round(4).to_dict("records")
    record = {
        "dataset": name,
        "command": f"python benchmarks/task_runs.py --only {name} --epochs {args.epochs:g} "
                   f"--max-length {args.max_length} --seed {args.seed} "
                   f"--class-weights {args.class_weights}",
        "task": task,
        "labels": labels,
        "settings": settings | {"model": "minilm (bundled all-MiniLM-L6-v2, 22.7M params)"},
        "rows": facts["rows"] | {"scored": found["n"]},
        "scored_split": split,
        "headline": {"metric": plan.headline, "value": round(found[plan.headline], 4),
                     "reference": plan.reference},
        "metrics": {k: round(found[k], 4) for k in SCALARS if k in found},
        "per_class_f1": {label: round(v["f1-score"], 4) for label, v in found["per_class"].items()},
        "best_epoch": saved["best_epoch"],
        "history": history,
        "train_runtime_s": round(saved["train_runtime_s"], 1),
        "scoring_wall_s": round(score_wall, 1),
        "data_fingerprint": facts["data_fingerprint"],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if task == "multilabel":
        # The same probabilities cut at 0.5 for every label: what tuning the thresholds on
        # validation bought.
        at_half = classification_metrics(y_true, probs, task, labels)
        record["thresholds"] = dict(zip(labels, thresholds, strict=True))
        record["metrics_at_0.5"] = {k: round(at_half[k], 4) for k in SCALARS if k in at_half}
    else:
        record["confusion_matrix"] = {"labels": labels, "matrix": found["confusion_matrix"]}
    if name == "sst5":
        # SST-5's dev set is also the validation set that picks the better epoch; the
        # last-epoch number involves no selection on it.
        record["note"] = ("dev is also the validation split (best-epoch selection); "
                          "history holds the last epoch's dev accuracy without selection")
    return record


def _key(record: dict) -> tuple[str, str]:
    return record["dataset"], record["settings"]["class_weights"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--only", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--class-weights", choices=["none", "auto"], default="none")
    parser.add_argument("--runs", type=Path, help="keep run directories here (default: temp)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    # Records of other datasets or weightings are kept: `--only` refreshes some of them.
    records = {}
    if args.output.is_file():
        records = {_key(r): r for r in json.loads(Path(args.output).read_text())["runs"]}
    payload = {
        "benchmark": "multi-class and multi-label fine-tuning on CPU subsets",
        "environment": versions() | machine(),
    }
    with tempfile.TemporaryDirectory(prefix="sentitune-tasks-") as tmp:
        for name in args.only:
            record = run_one(name, args, args.runs or Path(tmp))
            records[_key(record)] = record
            # Written after every dataset: a long benchmark keeps what it has finished.
            payload["runs"] = [records[key] for key in sorted(
                records, key=lambda k: (list(DATASETS).index(k[0]), k[1] != "none"))]
            files.write_json(args.output, payload)
    print(json.dumps(payload, indent=2))


if __name__ == "__main__":
    main()
