"""Labels out of a store: one consensus row per text, for files and for training."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sentitune import files
from sentitune.errors import SentituneError
from sentitune.labelstore.agreement import answers_by_item, consensus
from sentitune.labelstore.store import LabelStore

SUFFIXES = (".csv", ".jsonl")


@dataclass(frozen=True)
class Exported:
    """What `write_labels` wrote."""

    output: Path
    rows: int
    ties: int  # texts whose annotators split evenly: left out until someone breaks the tie


def labelled_rows(store: LabelStore, annotator: str | None = None) -> tuple[list[dict], int]:
    """One row per labelled text: its consensus label(s), how many annotators gave a label,
    the share agreeing, and the model's answer; and the number of tied texts left out."""
    annotations = store.annotations()
    first = {}
    for row in annotations:
        first.setdefault(row["item_id"], row)
    rows, ties = [], 0
    for item, answers in answers_by_item(annotations, annotator).items():
        chosen, share = consensus(answers, store.task, store.labels)
        if chosen is None:
            ties += 1
            continue
        about = first[item]
        label = chosen if store.task == "multilabel" else chosen[0]
        rows.append({"text": about["text"],
                     "labels" if store.task == "multilabel" else "label": label,
                     "annotators": len(answers), "agreement": round(share, 4),
                     "model_run": about["model_run"], "model_answer": about["model_answer"],
                     "model_score": about["model_score"], "text_hash": about["text_hash"]})
    return rows, ties


def write_labels(store: LabelStore, output: str | Path, annotator: str | None = None
                 ) -> Exported:
    """Write the consensus labels to .csv or .jsonl, atomically."""
    output = Path(output)
    if output.suffix.lower() not in SUFFIXES:
        raise SentituneError(f"--output must end in .csv or .jsonl, not '{output.name}'")
    rows, ties = labelled_rows(store, annotator)
    if output.suffix.lower() == ".jsonl":
        files.write_jsonl(output, rows)
    else:
        with files.atomic_path(output) as partial, partial.open("w", newline="",
                                                               encoding="utf-8") as out:
            names = list(rows[0]) if rows else ["text", "label"]
            writer = csv.DictWriter(out, fieldnames=names)
            writer.writeheader()
            for row in rows:  # lists as JSON: a one-item ["a, b"] stays one label
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v
                                 for k, v in row.items()})
    return Exported(output, len(rows), ties)


def training_frame(store: str) -> pd.DataFrame:
    """A store's consensus labels as training rows (`text`, `label`), as `train` reads
    them from --extra-data."""
    rows, _ = labelled_rows(LabelStore.open(store))
    frame = pd.DataFrame(rows, columns=None if rows else ["text", "label"])
    if "labels" in frame.columns:
        frame = frame.rename(columns={"labels": "label"})
    return frame[["text", "label"]]
