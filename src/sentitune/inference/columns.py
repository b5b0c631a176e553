"""Which input column is scored, and what the other columns become in the output.

Shared by local scoring (`scoring`) and Ray Data scoring (`ray_engine`).
"""

from __future__ import annotations

import pandas as pd

from sentitune import schema
from sentitune.dataset.sources import TEXT_COLUMNS, pick_column
from sentitune.inference.classifier import Classifier


def text_column_for(classifier: Classifier, columns: list[str], given: str | None) -> str:
    """The column to score: given, else the run's training column if present, else guessed."""
    if given is None:
        trained = (classifier.run.config.data.text_column
                   or classifier.run.data_notes.get("text_column"))
        if trained in columns:
            return trained
    return pick_column(pd.DataFrame(columns=columns), given, TEXT_COLUMNS, "text", "the input")


def passthrough_columns(frame: pd.DataFrame, text_column: str) -> list[dict] | None:
    """The other columns of each row, renamed where a prediction field has their name."""
    others = [c for c in frame.columns if str(c) != text_column]
    if not others:
        return None
    renamed = frame[others].rename(
        columns={c: f"input_{c}" for c in others if str(c) in schema.FIELDS})
    renamed = renamed.astype(object).where(renamed.notna(), None)
    return renamed.to_dict("records")
