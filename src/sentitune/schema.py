"""The prediction schema: one definition for the Python API, predict's JSONL/CSV files,
evaluate's errors and review queue, and the HTTP API.

A prediction of a single-label run (binary or multi-class):

    {"text", "label", "score", "probabilities", "needs_review", "truncated", "windows"}

and of a multi-label run:

    {"text", "labels", "score", "probabilities", "needs_review", "truncated", "windows"}

`windows` is how many windows of the text were scored: 1, or with `--long-text chunk` one
per overlapping window of a text over max_length (their logits averaged).

`score` is always the confidence that `needs_review` is judged on: the probability of
`label` (it equals `probabilities[label]`), or for multi-label runs the margin of the
least certain label decision: min over labels of |probability - that label's threshold|.
That multi-label score is no probability: 0.001 says some label sits on its threshold (a
coin-flip decision, so the text goes to review), whichever labels were chosen; a label can
be the most probable and still absent from `labels` when it stays under its own threshold.
Probabilities and scores are rounded to `DIGITS` decimals. Evaluation records add
`true_label` (or `true_labels`), `correct` and `slices`.

A text that cannot be scored (empty, only whitespace or zero-width characters; in a file
also a cell that is not text or bytes that are not UTF-8) still gets its record, so results
line up with the input one to one: `unscored` gives it the same fields with no answer
(`label` null, or `labels` empty; `score` null; every probability null; `windows` 0),
`needs_review` true and an `error` saying why. Only such records carry `error` in the Python
API; predict's output files have an `error` column on every row (empty when the row was
scored).

In CSV files lists are joined with `|` and `probabilities` become one
`p_LABEL` column per label (`flat_row`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

DIGITS = 6
FIELDS = ("text", "label", "labels", "score", "probabilities", "needs_review", "truncated",
          "windows", "error")


class SingleLabelPrediction(BaseModel):
    text: str
    label: str = Field(description="the most probable class")
    score: float = Field(description="probability of `label` (= probabilities[label])")
    probabilities: dict[str, float] = Field(description="every class's probability")
    needs_review: bool = Field(description="score below the review threshold")
    truncated: bool = Field(description="the text was cut to the model's max_length tokens")
    windows: int = Field(1, description="windows of the text scored (--long-text chunk)")


class MultiLabelPrediction(BaseModel):
    text: str
    labels: list[str] = Field(description="every label at or over its threshold; may be empty")
    score: float = Field(description="margin of the least certain label decision: min "
                                     "over labels of |probability - threshold|; near 0: a "
                                     "label on its threshold (not a probability)")
    probabilities: dict[str, float] = Field(description="every label's probability")
    needs_review: bool = Field(description="some label is too close to its threshold")
    truncated: bool = Field(description="the text was cut to the model's max_length tokens")
    windows: int = Field(1, description="windows of the text scored (--long-text chunk)")


Prediction = SingleLabelPrediction | MultiLabelPrediction


def prediction(text: str, labels: Sequence[str], probs: np.ndarray, *, chosen: Any,
               score: float, needs_review: bool, truncated: bool,
               windows: int = 1) -> dict[str, Any]:
    """One prediction record; `chosen` is a class id, or a 0/1 row for multi-label runs."""
    record: dict[str, Any] = {"text": text}
    if np.ndim(chosen) == 0:
        record["label"] = labels[int(chosen)]
    else:
        record["labels"] = [name for name, on in zip(labels, chosen, strict=True) if on]
    record["score"] = round(float(score), DIGITS)
    record["probabilities"] = {name: round(float(p), DIGITS)
                               for name, p in zip(labels, probs, strict=True)}
    record["needs_review"] = bool(needs_review)
    record["truncated"] = bool(truncated)
    record["windows"] = int(windows)
    return record


def unscored(text: Any, labels: Sequence[str], task: str, reason: str) -> dict[str, Any]:
    """The record of a text that could not be scored (see the module docstring)."""
    record: dict[str, Any] = {"text": text if isinstance(text, str) else None}
    if task == "multilabel":
        record["labels"] = []
    else:
        record["label"] = None
    return record | {"score": None, "probabilities": dict.fromkeys(labels),
                     "needs_review": True, "truncated": False, "windows": 0,
                     "error": reason}


def flat_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record as one CSV row: lists joined with |, probabilities as p_LABEL columns."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        if key == "probabilities":
            row.update({f"p_{label}": p for label, p in value.items()})
        elif isinstance(value, list):
            row[key] = "|".join(map(str, value))
        else:
            row[key] = value
    return row
