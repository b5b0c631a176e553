"""The labelled rows an audit looks at: a data source's training split or a run's own."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from sentitune.config import AuditConfig, DataConfig
from sentitune.errors import SentituneError


@dataclass
class AuditRows:
    """Training rows (`text`, `label` ids; lists of ids for multi-label) and their labels."""

    frame: pd.DataFrame
    labels: list[str]
    task: str
    source: str
    model: str  # the encoder the audit embeds or fine-tunes
    max_length: int

    @property
    def texts(self) -> list[str]:
        return list(self.frame["text"])

    def targets(self) -> np.ndarray:
        """Class ids (n,) or, for multi-label, a multi-hot matrix (n, labels)."""
        if self.task != "multilabel":
            return self.frame["label"].to_numpy(dtype=int)
        hot = np.zeros((len(self.frame), len(self.labels)), dtype=int)
        for i, ids in enumerate(self.frame["label"]):
            hot[i, list(ids)] = 1
        return hot

    def names_of(self, label) -> str | list[str]:
        """A label cell (an id or a list of ids) as its name(s)."""
        if self.task == "multilabel":
            return [self.labels[i] for i in label]
        return self.labels[int(label)]


def load_rows(settings: AuditConfig) -> AuditRows:
    """The rows `settings` names, checked so that every fold can be fitted."""
    if settings.dataset is None and settings.run is None:
        raise SentituneError("nothing to audit: give --data DATA (as train takes it) or "
                             "--run RUN_DIR")
    if settings.dataset is not None:
        from sentitune.dataset.splits import load_encoded

        config = DataConfig(dataset=settings.dataset, text_column=settings.text_column,
                            label_column=settings.label_column, task=settings.task,
                            max_length=settings.max_length)
        encoded, names, task, _ = load_encoded(config)
        rows = AuditRows(encoded["train"].reset_index(drop=True), names, task,
                         settings.dataset, settings.model or "minilm", settings.max_length)
    else:
        from sentitune.run import Run

        run = Run.open(settings.run)
        splits = run.rebuilt_splits()
        rows = AuditRows(splits.train.reset_index(drop=True), splits.labels, splits.task,
                         f"{run.path} (training rows)", settings.model or run.config.model.model,
                         settings.max_length)
    _check_foldable(rows, settings.folds)
    return rows


def _check_foldable(rows: AuditRows, folds: int) -> None:
    if folds < 2:
        raise SentituneError(f"--folds must be at least 2, got {folds}")
    if len(rows.frame) < folds:
        raise SentituneError(f"{rows.source}: {len(rows.frame)} rows cannot fill {folds} folds; "
                             "give more rows or fewer --folds")
    targets = rows.targets()
    present = (targets.sum(axis=0) > 0).sum() if rows.task == "multilabel" else len(
        set(targets.tolist()))
    if present < 2:
        raise SentituneError(f"{rows.source}: only one class present; an audit compares "
                             "classes, so it needs at least two")
