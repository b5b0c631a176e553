"""Batch scoring on Ray Data (`predict --engine ray`): a file or a folder of files, on a
local Ray or a cluster.

- Reading: one Ray read task per input file, streaming it in chunks through sentitune's
  own reader (`iter_table`), each row tagged with its file and row number.
- Scoring: `map_batches` over a pool of actors; each actor loads the run's `Classifier`
  once (any backend: torch, ONNX fp32/int8) and scores batches exactly as local `predict`
  does. Memory is bounded by the batches in flight (Ray Data's streaming executor with
  backpressure), not by the input size.
- Writing: Ray Data keeps the blocks in input order (`preserve_order`); the driver writes
  them as they arrive into ONE output file (.jsonl, .csv or .parquet) in input order,
  with the fields of local `predict`, under a partial name renamed into place when complete.
  Rows that cannot be scored (empty text, bytes that are not UTF-8, a cell that is not
  text) are written, with their file and row number and the reason, to
  `OUTPUT.errors.jsonl` (always written, empty when there are none), never dropped.

A cluster (`address`) needs sentitune installed on its nodes and the run and input paths
readable there (shared storage).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd

from sentitune import files, schema
from sentitune.dataset.sources import TABLE_SUFFIXES, iter_table
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier
from sentitune.inference.columns import passthrough_columns, text_column_for

OUTPUT_SUFFIXES = (".jsonl", ".csv", ".parquet")
FILE, ROW = "_sentitune_file", "_sentitune_row"  # where each row came from
READ_CHUNK = 1024  # rows per block read from a file


@dataclass(frozen=True)
class RayScores:
    """What `score_with_ray` wrote."""

    output: Path
    errors_file: Path
    texts: int  # predictions written
    needs_review: int
    truncated: int
    errors: int  # rows written to errors_file instead
    text_column: str
    actors: int


def errors_path(output: Path) -> Path:
    return output.with_name(output.name + ".errors.jsonl")


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


def _read_file(path: Path, index: int) -> Iterator[pd.DataFrame]:
    """A Ray read task: the file's rows in chunks, tagged with file index and row number."""
    start = 0
    # Undecodable bytes become U+FFFD so that one bad row is reported, not the whole file.
    for frame in iter_table(path, READ_CHUNK, encoding_errors="replace"):
        frame = frame.reset_index(drop=True)
        frame.insert(0, ROW, range(start, start + len(frame)))
        frame.insert(0, FILE, index)
        start += len(frame)
        yield frame


def _datasource(paths: list[Path]):
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class TableFiles(Datasource):
        """Every input file as one streaming read task, in order."""

        def estimate_inmemory_data_size(self) -> int:
            return sum(p.stat().st_size for p in paths)

        def get_read_tasks(self, parallelism: int, per_task_row_limit=None,
                           data_context=None) -> list[ReadTask]:
            return [ReadTask(partial(_read_file, path, index), BlockMetadata(
                num_rows=None, size_bytes=path.stat().st_size, input_files=[str(path)],
                exec_stats=None)) for index, path in enumerate(paths)]

    return TableFiles()


def row_problem(cell) -> str | None:
    """Why a text cell cannot be scored, or None."""
    if not isinstance(cell, str):
        return "empty text" if cell is None or pd.isna(cell) else "not text"
    if not cell.strip():
        return "empty text"
    if "\ufffd" in cell:
        return "not valid UTF-8"
    return None


def _scorer(run_dir: str, backend: str, text_column: str, keep_columns: bool, threads: int,
            options: dict) -> type:
    """The actor class, its settings bound in (constructor arguments would sit in Ray's
    object store for the actors' lifetime)."""

    class Scorer(_Scorer):
        def __init__(self) -> None:
            super().__init__(run_dir, backend, text_column, keep_columns, threads, options)

    return Scorer


class _Scorer:
    """A Ray actor: loads the classifier once, then scores batch after batch."""

    def __init__(self, run_dir: str, backend: str, text_column: str, keep_columns: bool,
                 threads: int, options: dict) -> None:
        import torch

        torch.set_num_threads(threads)  # one actor per core(s) it was given
        self.classifier = Classifier.from_pretrained(run_dir, backend=backend,
                                                     num_threads=threads)
        self.text_column, self.keep_columns, self.options = text_column, keep_columns, options

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        cells = list(frame[self.text_column])
        problems = [row_problem(cell) for cell in cells]
        good = [i for i, problem in enumerate(problems) if problem is None]
        results = iter(self.classifier.predict([cells[i] for i in good], **self.options))
        extra = (passthrough_columns(frame.drop(columns=[FILE, ROW]), self.text_column)
                 if self.keep_columns else None)
        records, errors, flags = [], [], []
        for i, problem in enumerate(problems):
            base = extra[i] if extra else {}
            if problem is None:
                result = next(results)
                records.append(json.dumps({**base, **result}, ensure_ascii=False,
                                          default=files.jsonable))
                errors.append(None)
                flags.append((result["needs_review"], result["truncated"]))
            else:
                cell = cells[i] if isinstance(cells[i], str) else None
                errors.append(json.dumps({"row": int(frame[ROW][i]), "error": problem,
                                          "text": cell, **base}, ensure_ascii=False,
                                         default=files.jsonable))
                records.append(None)
                flags.append((False, False))
        # JSON strings: one plain schema for every block, whatever the input columns are.
        review, truncated = zip(*flags, strict=True) if flags else ((), ())
        return pd.DataFrame({FILE: frame[FILE], "record": records, "error": errors,
                             "needs_review": list(review), "truncated": list(truncated)})


class _OutputWriter:
    """Writes records in arrival order into a .jsonl, .csv or .parquet file."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path, self.suffix = path, suffix
        self._handle = None if suffix == ".parquet" else path.open("w", newline="",
                                                                   encoding="utf-8")
        self._csv = None
        self._parquet = None

    def write(self, lines: list[str]) -> None:
        if not lines:
            return
        if self.suffix == ".jsonl":
            self._handle.write("".join(line + "\n" for line in lines))
        elif self.suffix == ".csv":
            for line in lines:
                row = schema.flat_row(json.loads(line))
                if self._csv is None:
                    self._csv = csv.DictWriter(self._handle, fieldnames=list(row))
                    self._csv.writeheader()
                self._csv.writerow(row)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            records = [json.loads(line) for line in lines]
            if self._parquet is None:
                table = pa.Table.from_pylist(records)
                self._parquet = pq.ParquetWriter(self.path, table.schema)
            else:  # the first rows fix the columns; a later row's missing ones are null
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


def import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise SentituneError("--engine ray needs Ray Data: pip install 'sentitune[ray]'"
                             ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None) -> Iterator:
    """Ray on the cluster at `address`, else a local Ray with `num_cpus` CPUs (default: all
    of this machine's); one already started in this process is used as it is. Ray is shut
    down afterwards only if started here."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    if address is None:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
                 logging_level=logging.WARNING)
    else:
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SentituneError(f"could not connect to the Ray cluster at {address} "
                                 f"({str(exc).splitlines()[0][:200]}); check --address") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def score_with_ray(run_dir: str | Path, source: str | Path, target: str | Path, *,
                   text_column: str | None = None, keep_columns: bool = True,
                   batch_size: int = 64, review_threshold: float | None = None,
                   threshold: float | None = None, review_truncated: bool | None = None,
                   backend: str = "torch", address: str | None = None,
                   num_cpus: int | None = None, actors: int | None = None,
                   cpus_per_actor: int = 1, progress: bool = True) -> RayScores:
    """Score every row of `source` (a file or a folder of files) into `target` with Ray
    Data; see the module docstring for the order, the output and the error file."""
    source, target = Path(source), Path(target)
    suffix = target.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise SentituneError(f"--output must end in {', '.join(OUTPUT_SUFFIXES)} with --engine "
                             f"ray, not '{target.name}'")
    if address is not None and num_cpus is not None:
        raise SentituneError("--ray-cpus sizes a local Ray; with --address the cluster's "
                             "CPUs are used: drop one of them")
    for name, value in (("--ray-cpus", num_cpus), ("--actors", actors),
                        ("--cpus-per-actor", cpus_per_actor)):
        if value is not None and value <= 0:
            raise SentituneError(f"{name} must be > 0, got {value}")
    paths = input_files(source)
    import_ray()
    # Every option is checked here, before Ray starts, with the errors of local predict.
    options = {"batch_size": batch_size, "review_threshold": review_threshold,
               "threshold": threshold, "review_truncated": review_truncated}
    probe = Classifier.from_pretrained(run_dir, backend=backend)
    probe.predict(["probe"], **options)
    first = next(iter_table(paths[0], 1, encoding_errors="replace"), pd.DataFrame())
    column = text_column_for(probe, [str(c) for c in first.columns], text_column)
    run_path = str(probe.run.path.resolve())
    del probe

    counts = {"texts": 0, "needs_review": 0, "truncated": 0, "errors": 0}
    with ray_session(address, num_cpus) as ray:
        from ray.data import DataContext

        if actors is None:
            actors = max(1, int(ray.available_resources().get("CPU", 1)) // cpus_per_actor)
        context = DataContext.get_current()
        saved = (context.execution_options.preserve_order, context.enable_progress_bars)
        context.execution_options.preserve_order = True
        context.enable_progress_bars = progress
        logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
        try:
            # Reading takes no CPU of its own: the actors hold every CPU they were given,
            # and a read task that waited for one would stall the pipeline.
            dataset = ray.data.read_datasource(_datasource(paths), num_cpus=0).map_batches(
                _scorer(run_path, backend, column, keep_columns, cpus_per_actor, options),
                batch_format="pandas", batch_size=batch_size * 4,
                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor)
            with files.atomic_path(errors_path(target)) as errors_partial, \
                    errors_partial.open("w", encoding="utf-8") as errors_out, \
                    files.atomic_path(target) as partial:
                writer = _OutputWriter(partial, suffix)
                try:
                    for block in dataset.iter_batches(batch_format="pandas", batch_size=None):
                        _write_block(block, paths, writer, errors_out, counts)
                finally:
                    writer.close()
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
    return RayScores(target, errors_path(target), text_column=column, actors=actors, **counts)


def _write_block(block: pd.DataFrame, paths: list[Path], writer: _OutputWriter,
                 errors_out, counts: dict) -> None:
    records = [r for r in block["record"] if isinstance(r, str)]
    writer.write(records)
    counts["texts"] += len(records)
    counts["needs_review"] += int(block["needs_review"].sum())
    counts["truncated"] += int(block["truncated"].sum())
    for index, error in zip(block[FILE], block["error"], strict=True):
        if isinstance(error, str):
            record = json.loads(error)
            errors_out.write(json.dumps({"file": str(paths[int(index)]), **record},
                                        ensure_ascii=False) + "\n")
            counts["errors"] += 1
