"""`sentitune audit`: which training labels look wrong, and which texts repeat with other
labels.

Every training row gets out-of-fold probabilities (a model that never saw its label scores
it: fast mode cross-validates a logistic regression on frozen mean-pooled encoder
embeddings; `finetune` fine-tunes the encoder per fold with the training code), then
cleanlab (Northcutt et al. 2021, confident learning) ranks the rows whose given label
those probabilities contradict. Binary, multi-class and multi-label (cleanlab's
multi-label API). Everything is computed before anything is written, so bad input leaves
no files behind.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentitune import console
from sentitune.auditing.issues import conflicting_duplicates, label_issues
from sentitune.auditing.rows import AuditRows, load_rows
from sentitune.auditing.scores import embed, finetuned_oof, linear_oof
from sentitune.auditing.writing import write_audit
from sentitune.config import TASKS, AuditConfig
from sentitune.errors import SentituneError

__all__ = ["AuditResult", "audit", "out_of_fold", "summary_lines"]


@dataclass
class AuditResult:
    output: Path
    report: dict
    issues: list[dict]
    duplicates: list[dict]
    probabilities: np.ndarray  # out-of-fold, rows x labels
    files: dict[str, Path]


def _validate(settings: AuditConfig) -> AuditConfig:
    if settings.fix not in (None, "drop", "relabel"):
        raise SentituneError(f"--fix must be drop, relabel or none, not '{settings.fix}'")
    if settings.task not in (None, *TASKS):
        raise SentituneError(f"--task must be one of {', '.join(TASKS)}, not '{settings.task}'")
    if not 0 < settings.near_duplicate <= 1:
        raise SentituneError(f"--near-duplicate must be in (0, 1], got "
                             f"{settings.near_duplicate}")
    for name in ("max_length", "batch_size", "top"):
        if getattr(settings, name) <= 0:
            raise SentituneError(f"{console.flag(name)} must be > 0")
    return settings


def out_of_fold(rows: AuditRows, settings: AuditConfig, progress: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
    """(out-of-fold probabilities, frozen embeddings) of every row."""
    embeddings = embed(rows.texts, rows.model, settings.max_length, settings.batch_size,
                       progress)
    if settings.finetune:
        return finetuned_oof(rows, settings, progress), embeddings
    return linear_oof(rows, embeddings, settings.folds, settings.seed), embeddings


def _accuracy(rows: AuditRows, probs: np.ndarray) -> float:
    targets = rows.targets()
    if rows.task == "multilabel":
        return float(((probs >= 0.5) == targets.astype(bool)).all(axis=1).mean())
    return float((probs.argmax(axis=1) == targets).mean())


def audit(config: AuditConfig | None = None, output: str | Path | None = None, *,
          progress: bool = True, **settings: Any) -> AuditResult:
    """Audit the labels of `--data` or a run's training rows; write the findings to
    `output` (default runs/audit-DATA). `settings` override AuditConfig fields."""
    settings = _validate(dataclasses.replace(config or AuditConfig(), **settings))
    rows = load_rows(settings)
    probs, embeddings = out_of_fold(rows, settings, progress)
    issues = label_issues(rows, probs)
    duplicates = conflicting_duplicates(rows, embeddings, settings.near_duplicate)
    report = {
        "source": rows.source, "task": rows.task, "labels": rows.labels,
        "mode": "finetune" if settings.finetune else "frozen embeddings + logistic regression",
        "model": rows.model, "folds": settings.folds, "settings": dataclasses.asdict(settings),
        "out_of_fold_accuracy": _accuracy(rows, probs),
        "counts": {"rows": len(rows.frame), "label_issues": len(issues),
                   "exact_duplicates": sum(d["kind"] == "exact" for d in duplicates),
                   "near_duplicates": sum(d["kind"] == "near" for d in duplicates)},
    }
    name = Path(str(settings.dataset or settings.run)).stem or "data"
    out = Path(output) if output else Path("runs") / f"audit-{name}"
    written = write_audit(out, rows, report, issues, duplicates, settings.fix, settings.top)
    return AuditResult(out, report, issues, duplicates, probs, written)


def summary_lines(result: AuditResult, shown: int = 5) -> list[str]:
    """What an audit found, as lines for a terminal."""
    report, counts = result.report, result.report["counts"]
    lines = [f"{counts['rows']:,} rows audited ({report['mode']}, out-of-fold accuracy "
             f"{report['out_of_fold_accuracy']:.3f}): {counts['label_issues']:,} suspected "
             f"label issues, {counts['exact_duplicates']:,} exact and "
             f"{counts['near_duplicates']:,} near duplicates with disagreeing labels"]
    lines += [f"  row {i['row']}: {i['given_label']} -> {i['suggested_label']} "
              f"({i['confidence']:.2f}) {i['text'][:80]!r}" for i in result.issues[:shown]]
    if "cleaned" in result.files:
        lines.append(f"cleaned data ({report['settings']['fix']}) written to "
                     f"{result.files['cleaned']} (train it: sentitune train --data "
                     f"{result.files['cleaned']})")
    lines.append(f"audit saved to {result.output} (label_issues.jsonl, summary.html)")
    return lines
