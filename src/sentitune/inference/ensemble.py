"""Several runs answering as one (a `Classifier` with several members): the mean of their
calibrated probabilities.

Each member keeps its own preprocessing, tokenizer, max length and backend, and scores
every batch with one forward pass of its own; the ensemble averages the members'
probabilities (each run's temperature is already folded into its head, so these are
calibrated) and hands them on as logits whose softmax (sigmoid, multi-label) gives back
that mean exactly. Everything downstream of `Classifier.scored` (decisions, review,
the prediction schema, evaluate, serve) is then the single-run code. Decisions come from
`sentitune.decision.combined_decision`.

Members must share the task and the labels, in the same order: averaging 'positive' of
one run with 'negative' of another would be silent nonsense, so it is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentitune.errors import SentituneError
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
