"""Training throughput: sentitune (fp32 and bf16) vs the tutorial recipe, side by side.

Same model, same SST-2 subset, same hyper-parameters (lr, batch 16, epochs, max length
128, seed). The only differences are the ones sentitune makes by default: each batch is
padded to its own longest text instead of to 128 tokens, and batches group texts of
similar length, and (arm `sentitune_bf16`) `--precision bf16` autocast, measured only on
CPUs with AMX or AVX512-BF16. The baseline is written out here as the tutorial script it stands for
(tokenize with padding="max_length", a plain Trainer), not as a sentitune option.

    python benchmarks/train_speed.py [--model minilm] [--train-samples 2000] [--seeds 42 43 44]

Prints one JSON object: per seed, samples/s, dev accuracy and the share of padding tokens
in the training batches of each; the speed ratio over all seeds, the mean and spread of
the accuracies and of their difference, and the machine.
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
from sentitune.dataset import load_splits
from sentitune.hardware import cpu_bf16_flags
from sentitune.metrics import classification_metrics, probabilities
from sentitune.model import load_model, load_tokenizer, quiet_transformers
from sentitune.training import train


def tutorial_recipe(config: RunConfig, out_dir: Path, lengths: np.ndarray) -> dict:
    """The copy-paste script: pad everything to max_length, Trainer, random batches."""
    import datasets
    import torch
    from transformers import Trainer, TrainingArguments, set_seed

    d, t = config.data, config.training
    splits = load_splits(d, t.seed)
    tokenizer = load_tokenizer(config.model.model)
    set_seed(t.seed)
    model = load_model(config.model.model, splits.labels, splits.task)

    def encode(frame):
        enc = tokenizer(list(frame["text"]), padding="max_length", truncation=True,
                        max_length=d.max_length)
        return datasets.Dataset.from_dict(dict(enc) | {"labels": list(frame["label"])})

    train_set, val_set = encode(splits.train), encode(splits.validation)
    args = TrainingArguments(
        output_dir=str(out_dir), learning_rate=t.learning_rate,
        per_device_train_batch_size=t.batch_size, per_device_eval_batch_size=t.eval_batch_size,
        num_train_epochs=t.epochs, weight_decay=t.weight_decay, warmup_steps=t.warmup_ratio,
        seed=t.seed, eval_strategy="epoch", save_strategy="no", logging_strategy="epoch",
        report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available(),
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set)
    started = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - started
    logits = trainer.predict(val_set).predictions
    found = classification_metrics(np.asarray(splits.validation["label"]),
                                   probabilities(logits, splits.task),
                                   splits.task, splits.labels)
    return {
        "train_samples_per_s": round(len(train_set) * t.epochs / runtime, 2),
        "train_runtime_s": round(runtime, 1),
        "dev_accuracy": round(found["accuracy"], 4),
        "padding_share": round(1 - lengths.mean() / d.max_length, 4),
    }


def sentitune_recipe(config: RunConfig, out_dir: Path, lengths: np.ndarray,
                     precision: str = "fp32") -> dict:
    result = train(config, out_dir, progress=False, precision=precision)
    return {
        "train_samples_per_s": round(len(lengths) * config.training.epochs
                                     / result.metrics["train_runtime_s"], 2),
        "train_runtime_s": result.metrics["train_runtime_s"],
        "dev_accuracy": round(result.metrics["validation"]["accuracy"], 4),
        "padding_share": round(_grouped_padding_share(lengths, config), 4),
    }


def _train_lengths(config: RunConfig) -> np.ndarray:
    """Token count of each training text, truncated to max_length but unpadded."""
    splits = load_splits(config.data, config.training.seed)
    tokenizer = load_tokenizer(config.model.model)
    enc = tokenizer(list(splits.train["text"]), truncation=True,
                    max_length=config.data.max_length)
    return np.array([len(ids) for ids in enc["input_ids"]])


def _grouped_padding_share(lengths: np.ndarray, config: RunConfig) -> float:
    """Padding in the batches a length-grouped sampler really forms (one epoch)."""
    import torch
    from transformers.trainer_pt_utils import LengthGroupedSampler

    batch = config.training.batch_size
    generator = torch.Generator().manual_seed(config.training.seed)
    order = list(LengthGroupedSampler(batch, lengths=lengths.tolist(), generator=generator))
    padded = real = 0
    for start in range(0, len(order), batch):
        chunk = lengths[order[start:start + batch]]
        padded += chunk.max() * len(chunk)
        real += chunk.sum()
    return 1 - real / padded


def _mean_std(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--train-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42],
                        help="one subset, initialisation and batch order per seed")
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_transformers()
    # Emulated bf16 is slower than fp32: that arm runs only where the CPU has bf16 units.
    arms = ("tutorial", "sentitune") + (("sentitune_bf16",) if cpu_bf16_flags() else ())
    runs = []
    for seed in args.seeds:
        config = RunConfig().replace(
            dataset="sst2", model=args.model, train_samples=args.train_samples, max_length=128,
            batch_size=16, eval_batch_size=64, epochs=args.epochs,
            learning_rate=args.learning_rate, weight_decay=0.01, warmup_ratio=0.0, seed=seed,
        )
        with tempfile.TemporaryDirectory() as tmp:
            lengths = _train_lengths(config)  # the same texts in both arms
            baseline = tutorial_recipe(config, Path(tmp) / "baseline", lengths)
            row = {"seed": seed, "tutorial": baseline,
                   "sentitune": sentitune_recipe(config, Path(tmp) / "fp32", lengths)}
            if "sentitune_bf16" in arms:
                row["sentitune_bf16"] = sentitune_recipe(config, Path(tmp) / "bf16", lengths,
                                                         precision="bf16")
        runs.append(row)
    seconds = {arm: sum(run[arm]["train_runtime_s"] for run in runs) for arm in arms}
    accuracy = {arm: [run[arm]["dev_accuracy"] for run in runs] for arm in arms}
    result = {
        "benchmark": "train_speed",
        "model": args.model,
        "data": f"SST-2, {args.train_samples} train sentences per seed, dev 872",
        "settings": {"batch_size": 16, "max_length": 128, "epochs": args.epochs,
                     "learning_rate": args.learning_rate, "seeds": args.seeds},
        "runs": runs,
        "speedup_vs_tutorial": {arm: round(seconds["tutorial"] / seconds[arm], 2)
                                for arm in arms[1:]},
        "dev_accuracy": {arm: _mean_std(values) for arm, values in accuracy.items()},
        "accuracy_delta_vs_tutorial": {arm: _mean_std([ours - base for ours, base in zip(
            accuracy[arm], accuracy["tutorial"], strict=True)]) for arm in arms[1:]},
        "bf16_arm": ("measured" if "sentitune_bf16" in arms
                     else "skipped: this CPU has no bf16 instructions"),
        "machine": machine(load_start),
    }
    emit(result, args.output)


if __name__ == "__main__":
    main()
