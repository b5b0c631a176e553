"""Exploratory data report: what a dataset looks like before anyone trains on it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentitune import files
from sentitune.config import DataConfig, RunConfig, make_config
from sentitune.console import say
from sentitune.dataset.splits import Splits, data_problems, load_splits
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
         output: str | Path | None = None, model: str = "minilm", progress: bool = True,
         **settings: Any) -> DataReport:
    """`sentitune data`: the report on `dataset` (or the preset's), with its data settings;
    `progress` says what it is doing on stderr."""
    if dataset is not None:
        settings["dataset"] = dataset
    run_config = make_config(config, **settings)
    output = Path(output or f"runs/data-{Path(run_config.data.dataset).stem}")
    report = data_report(run_config.data, model, output, run_config.training.seed, progress)
    return DataReport(output, report)


def data_report(config: DataConfig, model: str, output: Path, seed: int = 42,
                progress: bool = False) -> dict:
    """Rows, class balance, token lengths, truncation, duplicates and overlap; + a histogram.

    Two duplicate counts: `notes.duplicates_in_train` counts repeated texts among the
    source's training rows as read (before the hold-out and any sample);
    `splits.NAME.duplicates` those within each split as used. `problems` lists, in words,
    what `sentitune train` warns about."""
    quiet_transformers()
    say(progress, f"reading {config.dataset} ...")
    splits = load_splits(config, seed)
    tokenizer = load_tokenizer(model)
    frames = {"train": splits.train, "validation": splits.validation}
    if splits.test is not None:
        frames["test"] = splits.test
    report: dict = {"dataset": config.dataset, "task": splits.task, "labels": splits.labels,
                    "max_length": config.max_length, "tokenizer": model, "splits": {}}
    lengths = {}
    for name, frame in frames.items():
        say(progress, f"measuring the token lengths of {len(frame):,} {name} texts ...")
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
    report["problems"] = data_problems(splits, config)
    output.mkdir(parents=True, exist_ok=True)
    plot_lengths(lengths, config.max_length, output / "lengths.png")
    files.write_json(output / "data_report.json", report)
    return report


def summary(report: dict) -> list[str]:
    """The report in a few lines a person reads (data_report.json has everything)."""
    splits = report["splits"]
    lines = [f"{report['dataset']}: {report['task']}, {len(report['labels'])} labels "
             f"({', '.join(report['labels'])})"]
    for name, split in splits.items():
        balance = ", ".join(f"{label} {n / max(split['rows'], 1):.0%}"
                            for label, n in split["class_balance"].items())
        length = split["token_length"]
        lines.append(f"  {name}: {split['rows']:,} rows ({balance}); tokens median "
                     f"{length['p50']}, p95 {length['p95']}, max {length['max']}; "
                     f"{split['truncated_share']:.1%} over max length {report['max_length']}")
    within = ", ".join(f"{name} {split['duplicates']:,}" for name, split in splits.items())
    lines.append(f"  duplicates: {report['notes'].get('duplicates_in_train', 0):,} repeated "
                 f"texts in the source's training rows as read; within each split as used: "
                 f"{within}")
    lines += [f"  problem: {problem}" for problem in report["problems"]] or ["  no problems found"]
    return lines
