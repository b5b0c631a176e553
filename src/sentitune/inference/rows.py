"""File scoring's one pipeline, shared by the local engine and Ray: input rows become one
output record each, in input order, and the rows that could not be scored are also listed
in an errors file.

- Input: a file or a folder of files (`input_files`), read by sentitune's one reader
  (`iter_table`) with bytes that are not UTF-8 replaced, so one bad row is reported
  rather than the whole file failing.
- `score_rows`: a frame's text column scored by a `Classifier`; the other columns pass
  through (`passthrough_columns`). A row whose cell cannot be scored (`row_problem`: empty
  text, not text, not valid UTF-8) keeps its place in the output as `schema.unscored`'s
  record and is also listed, with its file, row number and reason, in
  `OUTPUT.errors.jsonl` (always written, empty when every row was scored).
- `OutputWriter`: .jsonl, .csv or .parquet, chosen by the output's suffix; every record
  has an `error` field (null when scored), so every row has the same columns.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from sentitune import files, schema
from sentitune.dataset.sources import TABLE_SUFFIXES
from sentitune.dataset.splits import is_blank
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.inference.columns import passthrough_columns

OUTPUT_SUFFIXES = (".jsonl", ".csv", ".parquet")
ENGINES = ("local", "ray")  # local: this process; ray: Ray Data (ray_engine)
# Parquet types of the prediction fields, for a first chunk where they are all null.
_PARQUET_TYPES = {"score": "float64", "label": "string", "error": "string", "text": "string"}


@dataclass(frozen=True)
class FileScores:
    """What `score_file` wrote."""

    output: Path
    errors_file: Path
    texts: int  # rows written: one per input row
    needs_review: int  # scored rows below the review threshold
    truncated: int
    errors: int  # rows that could not be scored: marked in `output`, listed in errors_file
    text_column: str
    engine: str = "local"
    actors: int | None = None  # engine ray: model replicas


def errors_path(output: Path) -> Path:
    return output.with_name(output.name + ".errors.jsonl")


def check_output(target: Path) -> str:
    """The output's format (its suffix), refused early when it is not one we write."""
    suffix = target.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise SentituneError(f"--output must end in {', '.join(OUTPUT_SUFFIXES)}, not "
                             f"'{target.name}'")
    return suffix


def input_files(source: Path) -> list[Path]:
    """`source` itself, or the data files of a folder in name order (hidden files skipped)."""
    if not source.exists():
        raise SentituneError(f"file not found: {source}")
    if not source.is_dir():
        return [source]
    found = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith(".")
                   and any(s.lower() in TABLE_SUFFIXES for s in p.suffixes))
    if not found:
        raise SentituneError(f"{source} holds no data files ({', '.join(TABLE_SUFFIXES)}, "
                             "optionally .gz); give a file or a folder of them")
    return found


def row_problem(cell) -> str | None:
    """Why a text cell cannot be scored, or None."""
    if not isinstance(cell, str):
        return "empty text" if cell is None or pd.isna(cell) else "not text"
    if is_blank(cell):
        return "empty text"
    if "\ufffd" in cell:
        return "not valid UTF-8"
    return None


def score_rows(classifier: Classifier, frame: pd.DataFrame, text_column: str,
               keep_columns: bool, rows: list[int] | None = None, **per_call: Any
               ) -> tuple[list[dict], list[dict]]:
    """One output record per row of `frame`, and an error record (`row`: its number in
    `rows`, else its position) for each row that could not be scored; `per_call` goes to
    `Classifier.predict`."""
    frame = frame.reset_index(drop=True)
    cells = list(frame[text_column])
    problems = [row_problem(cell) for cell in cells]
    good = [i for i, problem in enumerate(problems) if problem is None]
    results = iter(classifier.predict([cells[i] for i in good], **per_call))
    extra = passthrough_columns(frame, text_column) if keep_columns else None
    records, errors = [], []
    for i, problem in enumerate(problems):
        base = extra[i] if extra else {}
        if problem is None:
            records.append({**base, **next(results), "error": None})
            continue
        text = cells[i] if isinstance(cells[i], str) else None
        records.append({**base, **schema.unscored(text, classifier.labels, classifier.task,
                                                  problem)})
        errors.append({"row": rows[i] if rows is not None else i, "error": problem,
                       "text": text, **base})
    return records, errors


def write_errors(out, path: Path, errors: list[dict]) -> None:
    """Error records of `path`'s rows as JSON lines of the errors file."""
    out.write("".join(json.dumps({"file": str(path), **error}, ensure_ascii=False,
                                 default=files.jsonable) + "\n" for error in errors))


class Tally:
    """Counts of what was written, kept while writing."""

    def __init__(self) -> None:
        self.texts = self.needs_review = self.truncated = self.errors = 0

    def add(self, records: list[dict]) -> None:
        scored = [r for r in records if r["error"] is None]
        self.texts += len(records)
        self.errors += len(records) - len(scored)
        self.needs_review += sum(bool(r["needs_review"]) for r in scored)
        self.truncated += sum(bool(r["truncated"]) for r in scored)

    def counts(self) -> dict[str, int]:
        return {"texts": self.texts, "needs_review": self.needs_review,
                "truncated": self.truncated, "errors": self.errors}


class OutputWriter:
    """Writes records in arrival order into a .jsonl, .csv or .parquet file."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path, self.suffix = path, suffix
        self._handle = None if suffix == ".parquet" else path.open("w", newline="",
                                                                   encoding="utf-8")
        self._csv = None
        self._parquet = None

    def write(self, records: list[dict]) -> None:
        if not records:
            return
        if self.suffix == ".jsonl":
            self._handle.write("".join(json.dumps(r, ensure_ascii=False,
                                                  default=files.jsonable) + "\n"
                                       for r in records))
        elif self.suffix == ".csv":
            for record in records:
                row = schema.flat_row(record)
                if self._csv is None:
                    self._csv = csv.DictWriter(self._handle, fieldnames=list(row))
                    self._csv.writeheader()
                self._csv.writerow(row)
        else:
            self._write_parquet(records)

    def _write_parquet(self, records: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        records = json.loads(json.dumps(records, default=files.jsonable))  # plain types
        if self._parquet is None:
            table = pa.Table.from_pylist(records)
            # The first rows fix the columns; a prediction field they leave all null gets
            # its real type, so later rows fit.
            schema_ = pa.schema([
                f.with_type(pa.type_for_alias(_PARQUET_TYPES[f.name]))
                if pa.types.is_null(f.type) and f.name in _PARQUET_TYPES else f
                for f in table.schema])
            self._parquet = pq.ParquetWriter(self.path, schema_)
        table = pa.Table.from_pylist(records, schema=self._parquet.schema)
        self._parquet.write_table(table)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
        if self._parquet is not None:
            self._parquet.close()
        elif self.suffix == ".parquet":  # no rows at all: still a valid, empty file
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.table({}), self.path)
