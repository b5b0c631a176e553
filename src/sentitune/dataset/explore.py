"""Exploratory data report: what a dataset looks like before anyone trains on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentitune import files
from sentitune.config import DataConfig, RunConfig, make_config
from sentitune.dataset.splits import Splits, load_splits
from sentitune.model import load_tokenizer, quiet_transformers
from sentitune.plots import plot_lengths


def _class_balance(splits: Splits, split) -> dict[str, int]:
    if splits.task == "multilabel":
        counts = Counter(i for ids in split["label"] for i in ids)
    else:
        counts = Counter(split["label"])
    return {name: int(counts.get(i, 0)) for i, name in enumerate(splits.labels)}


@dataclass(frozen=True)
class DataReport:
    output: Path  # holds data_report.json and lengths.png
    report: dict


def data(dataset: str | None = None, *, config: RunConfig | str | None = None,
         output: str | Path | None = None, model: str = "minilm", **settings: Any
         ) -> DataReport:
    """`sentitune data`: the report on `dataset` (or the preset's), with its data settings."""
    if dataset is not None:
        settings["dataset"] = dataset
    run_config = make_config(config, **settings)
    output = Path(output or f"runs/data-{Path(run_config.data.dataset).stem}")
    report = data_report(run_config.data, model, output, run_config.training.seed)
    return DataReport(output, report)


def data_report(config: DataConfig, model: str, output: Path, seed: int = 42) -> dict:
    """Rows, class balance, token lengths, truncation, duplicates and overlap; + a histogram."""
    quiet_transformers()
    splits = load_splits(config, seed)
    tokenizer = load_tokenizer(model)
    frames = {"train": splits.train, "validation": splits.validation}
    if splits.test is not None:
        frames["test"] = splits.test
    report: dict = {"dataset": config.dataset, "task": splits.task, "labels": splits.labels,
                    "max_length": config.max_length, "tokenizer": model, "splits": {}}
    lengths = {}
    for name, frame in frames.items():
        ids = tokenizer(list(frame["text"]), truncation=False)["input_ids"]
        counts = np.array([len(x) for x in ids])
        lengths[name] = counts.tolist()
        report["splits"][name] = {
            "rows": len(frame),
            "class_balance": _class_balance(splits, frame),
            "token_length": {f"p{q}": int(np.percentile(counts, q)) for q in (50, 90, 95, 99)}
            | {"mean": round(float(counts.mean()), 1), "max": int(counts.max())},
            "truncated_share": round(float((counts > config.max_length).mean()), 4),
            "duplicates": int(frame["text"].duplicated().sum()),
        }
    report["notes"] = splits.notes
    output.mkdir(parents=True, exist_ok=True)
    plot_lengths(lengths, config.max_length, output / "lengths.png")
    files.write_json(output / "data_report.json", report)
    return report
