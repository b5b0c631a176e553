"""Texts into a label store from files: evaluate's review queue, predict's output (its
`needs_review` rows) or any unlabeled file.

The text column is guessed as everywhere else (`pick_column`). A file that carries a
model's answers (a `label`/`labels` column beside a `score`) brings them along, so the
labelling page can show what the model said; the store orders texts by that score.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from sentitune.dataset.sources import TEXT_COLUMNS, pick_column, read_table

TRUE_WORDS = {"true", "1", "yes"}


def _flag(value: Any) -> bool:
    return value is True or str(value).strip().lower() in TRUE_WORDS


def _answer(row: dict, multilabel: bool) -> Any:
    value = row.get("labels", row.get("label"))
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if multilabel and isinstance(value, str):  # a CSV cell: a|b (predict's flat rows)
        return [part for part in value.split("|") if part]
    return value


def _probabilities(row: dict) -> dict[str, float] | None:
    value = row.get("probabilities")
    if isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, dict):
        return {str(k): float(v) for k, v in value.items()}
    flat = {k[2:]: float(v) for k, v in row.items() if k.startswith("p_") and pd.notna(v)}
    return flat or None


def records_from_file(path: str | Path, *, text_column: str | None = None,
                      everything: bool = False, multilabel: bool = False
                      ) -> tuple[Iterator[dict], dict]:
    """The file's texts as store records, and what was read (column, rows, kind).

    A file with a `needs_review` column gives only its flagged rows unless `everything`."""
    path = Path(path)
    frame = read_table(path)
    if frame.empty and not len(frame.columns):  # an empty queue: nothing to add
        return iter(()), {"text_column": text_column or "text", "rows": 0, "taken": 0,
                          "kind": "an empty file"}
    column = pick_column(frame, text_column, TEXT_COLUMNS, "text", str(path))
    facts: dict[str, Any] = {"text_column": column, "rows": len(frame)}
    if "needs_review" in frame.columns and not everything:
        frame = frame[[_flag(v) for v in frame["needs_review"]]]
        facts["kind"] = "predictions: the rows flagged needs_review"
    with_answers = "score" in frame.columns and ({"label", "labels"} & set(frame.columns))
    facts.setdefault("kind", "model answers" if with_answers else "unlabeled texts")
    facts["taken"] = len(frame)

    def records() -> Iterator[dict]:
        for row in frame.to_dict("records"):
            text = row.get(column)
            record: dict[str, Any] = {"text": text if isinstance(text, str) else ""}
            if with_answers:
                answer = _answer(row, multilabel)
                if answer is not None:
                    key = "labels" if multilabel else "label"
                    record[key] = answer if multilabel else str(answer)
                    record["score"] = float(row["score"]) if pd.notna(row["score"]) else None
                    record["probabilities"] = _probabilities(row)
            yield record

    return records(), facts
