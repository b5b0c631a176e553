"""Several runs answering as one: the mean of their calibrated probabilities.

Each member keeps its own preprocessing, tokenizer, max length and backend, and scores
every batch with one forward pass of its own; the ensemble averages the members'
probabilities (each run's temperature is already folded into its head, so these are
calibrated) and hands them on as logits whose softmax (sigmoid, multi-label) gives back
that mean exactly. Everything downstream of `Classifier.scored` (decisions, review,
the prediction schema, evaluate, serve) is then the single-run code.

Members must share the task and the labels, in the same order: averaging 'positive' of
one run with 'negative' of another would be silent nonsense, so it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentitune.decision import Decision
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.metrics import probabilities
from sentitune.run import Run

# Probabilities are clipped this far from 0 and 1 before they become logits again, so a
# member that is certain gives a finite logit.
_EPS = 1e-7


def mean_probability_logits(member_logits: Sequence[np.ndarray], task: str) -> np.ndarray:
    """Logits whose softmax (multi-label: sigmoid) is the mean of the members' probabilities.

    Single-label: log of the mean, since softmax(log p) = p when p sums to 1.
    Multi-label: logit of the mean, label by label.
    """
    mean = np.mean([probabilities(np.asarray(z, dtype=np.float64), task)
                    for z in member_logits], axis=0)
    mean = np.clip(mean, _EPS, 1 - _EPS)
    if task == "multilabel":
        return np.log(mean) - np.log1p(-mean)
    return np.log(mean)


def check_members(runs: Sequence[Run]) -> None:
    """Refuse runs that do not answer the same question (task and labels, in order)."""
    first = runs[0]
    for run in runs[1:]:
        if run.task != first.task:
            raise SentituneError(f"ensemble members must share a task: {first.path} is "
                                 f"{first.task}, {run.path} is {run.task}")
        if run.labels != first.labels:
            raise SentituneError(f"ensemble members must share their labels in order: "
                                 f"{first.path} has {first.labels}, {run.path} has {run.labels}")
    paths = [run.path.resolve() for run in runs]
    if len(set(paths)) != len(paths):
        raise SentituneError("a run is listed twice in the ensemble; give each member once")


class Ensemble(Classifier):
    """Runs with the same labels, answering with the mean of their probabilities.

    Decisions come from the first member's decision (its review threshold); multi-label
    thresholds are the mean of the members' tuned ones. A text counts as truncated when
    any member had to cut it.
    """

    def __init__(self, members: Sequence[Classifier]) -> None:
        if len(members) < 2:
            raise SentituneError("an ensemble needs at least two runs")
        check_members([m.run for m in members])
        first = members[0]
        # The first member stands for the ensemble wherever one run's settings are read
        # (its data settings, text column, encoder for length statistics).
        self.__dict__.update({k: v for k, v in first.__dict__.items() if k != "_lock"})
        self.members = list(members)
        thresholds = [m.decision.label_thresholds for m in members]
        label_thresholds = (np.mean(thresholds, axis=0).round(6).tolist()
                            if all(t is not None for t in thresholds) else None)
        self.decision = Decision(
            review_threshold=first.decision.review_threshold,
            label_thresholds=label_thresholds,
            temperature=1.0,  # each member's temperature is folded into its own head
            review_truncated=any(m.decision.review_truncated for m in members))

    @property
    def name(self) -> str:
        return "+".join(m.run.path.resolve().name for m in self.members)

    def info(self) -> dict:
        return {**super().info(),
                "model": " + ".join(m.run.config.model.model for m in self.members),
                "run_dir": [str(m.run.path) for m in self.members],
                "ensemble": len(self.members),
                "metrics": {}}  # the members' own are in their runs; none is the ensemble's

    def scored(self, texts: Sequence[str], batch_size: int = 64,
               max_batch_tokens: int | None = None
               ) -> tuple[np.ndarray, list[bool], np.ndarray]:
        logits, truncated, windows = [], np.zeros(len(texts), bool), np.ones(len(texts), int)
        for member in self.members:
            z, cut, counts = member.scored(texts, batch_size, max_batch_tokens)
            logits.append(z)
            truncated |= np.asarray(cut, dtype=bool)
            windows = np.maximum(windows, counts)
        return (mean_probability_logits(logits, self.task).astype(np.float32),
                truncated.tolist(), windows)

    def window_logits(self, texts, batch_size=64, max_batch_tokens=None):
        raise SentituneError("an ensemble scores whole texts; its members' windows differ")


def open_runs(run_dirs: str | Path | Run | Sequence[str | Path | Run]) -> list[Run]:
    """One run directory or several, opened; several are checked as ensemble members
    before any model loads."""
    if isinstance(run_dirs, str | Path | Run):
        run_dirs = [run_dirs]
    runs = [r if isinstance(r, Run) else Run.open(r) for r in run_dirs]
    if not runs:
        raise SentituneError("give at least one run directory")
    if len(runs) > 1:
        check_members(runs)
    return runs


def load_classifier(run_dirs: str | Path | Run | Sequence[str | Path | Run], *,
                    backend: str = "torch", device: str | None = None,
                    num_threads: int | None = None, long_text: str | None = None,
                    stride: int | None = None) -> Classifier:
    """One run as a Classifier, several as an Ensemble, each member with `backend`."""
    runs = open_runs(run_dirs)
    members = [Classifier.from_pretrained(run, backend=backend, device=device,
                                          num_threads=num_threads, long_text=long_text,
                                          stride=stride) for run in runs]
    return members[0] if len(members) == 1 else Ensemble(members)
