"""Batch scoring on Ray Data (`predict --engine ray`): a file or a folder of files, on a
local Ray or a cluster.

- Reading: one Ray read task per input file, streaming it in chunks through sentitune's
  own reader (`iter_table`), each row tagged with its file and row number.
- Scoring: `map_batches` over a pool of actors; each actor loads the `Classifier` once
  (one run or an ensemble, any backend: torch, ONNX fp32/int8, with the same
  InferenceConfig) and scores batches with the local engine's `score_rows`. Memory is
  bounded by the batches in flight (Ray Data's streaming executor with backpressure), not
  by the input size.
- Writing: Ray Data keeps the blocks in input order (`preserve_order`); the driver writes
  them as they arrive with the local engine's `OutputWriter` into ONE output file (.jsonl,
  .csv or .parquet) and the same `OUTPUT.errors.jsonl` (`sentitune.inference.rows`),
  under partial names renamed into place when complete.

A cluster (`address`) needs sentitune installed on its nodes and the run and input paths
readable there (shared storage).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pandas as pd

from sentitune import files
from sentitune.config import InferenceConfig
from sentitune.dataset.sources import iter_table
from sentitune.errors import SentituneError
from sentitune.inference.classifier import Classifier, RunDirs
from sentitune.inference.columns import text_column_for
from sentitune.inference.rows import (
    FileScores,
    OutputWriter,
    Tally,
    check_output,
    errors_path,
    input_files,
    score_rows,
    write_errors,
)

FILE, ROW = "_sentitune_file", "_sentitune_row"  # where each row came from
READ_CHUNK = 1024  # rows per block read from a file


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


def _scorer(run_dirs: list[str], config: InferenceConfig, text_column: str,
            keep_columns: bool, threads: int) -> type:
    """The actor class, its settings bound in (constructor arguments would sit in Ray's
    object store for the actors' lifetime)."""

    class Scorer(_Scorer):
        def __init__(self) -> None:
            super().__init__(run_dirs, config, text_column, keep_columns, threads)

    return Scorer


class _Scorer:
    """A Ray actor: loads the classifier once, then scores batch after batch."""

    def __init__(self, run_dirs: list[str], config: InferenceConfig, text_column: str,
                 keep_columns: bool, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)  # one actor per core(s) it was given
        self.classifier = Classifier.from_pretrained(run_dirs, config, num_threads=threads)
        self.text_column, self.keep_columns = text_column, keep_columns

    def __call__(self, frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.reset_index(drop=True)
        records, errors = score_rows(self.classifier, frame.drop(columns=[FILE, ROW]),
                                     self.text_column, self.keep_columns, list(frame[ROW]))
        # JSON strings: one plain schema for every block, whatever the input columns are.
        dump = partial(json.dumps, ensure_ascii=False, default=files.jsonable)
        unscored = iter(errors)
        return pd.DataFrame({FILE: frame[FILE], "record": [dump(r) for r in records],
                             "error": [None if r["error"] is None else dump(next(unscored))
                                       for r in records]})


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


def score_with_ray(run_dirs: RunDirs, source: Path, target: Path, config: InferenceConfig,
                   *, text_column: str | None = None, keep_columns: bool = True,
                   address: str | None = None, num_cpus: int | None = None,
                   actors: int | None = None, cpus_per_actor: int = 1,
                   progress: bool = True) -> FileScores:
    """Score every row of `source` (a file or a folder of files) into `target` with Ray
    Data; see the module docstring for the order, the output and the error file."""
    suffix = check_output(target)
    if address is not None and num_cpus is not None:
        raise SentituneError("--ray-cpus sizes a local Ray; with --address the cluster's "
                             "CPUs are used: drop one of them")
    for name, value in (("--ray-cpus", num_cpus), ("--actors", actors),
                        ("--cpus-per-actor", cpus_per_actor)):
        if value is not None and value <= 0:
            raise SentituneError(f"{name} must be > 0, got {value}")
    paths = input_files(source)
    import_ray()
    # Every setting is checked here, before Ray starts, with the errors of local predict.
    probe = Classifier.from_pretrained(run_dirs, config)
    first = next(iter_table(paths[0], 1, encoding_errors="replace"), pd.DataFrame())
    column = text_column_for(probe, [str(c) for c in first.columns], text_column)
    run_paths = [str(m.run.path.resolve()) for m in probe.members]
    del probe

    tally = Tally()
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
                _scorer(run_paths, config, column, keep_columns, cpus_per_actor),
                batch_format="pandas", batch_size=config.batch_size * 4,
                compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=cpus_per_actor)
            with files.atomic_path(errors_path(target)) as errors_partial, \
                    errors_partial.open("w", encoding="utf-8") as errors_out, \
                    files.atomic_path(target) as partial:
                writer = OutputWriter(partial, suffix)
                try:
                    for block in dataset.iter_batches(batch_format="pandas", batch_size=None):
                        _write_block(block, paths, writer, errors_out, tally)
                finally:
                    writer.close()
        finally:
            context.execution_options.preserve_order, context.enable_progress_bars = saved
    return FileScores(target, errors_path(target), text_column=column, engine="ray",
                      actors=actors, **tally.counts())


def _write_block(block: pd.DataFrame, paths: list[Path], writer: OutputWriter,
                 errors_out, tally: Tally) -> None:
    records = [json.loads(r) for r in block["record"]]
    writer.write(records)
    tally.add(records)
    for index, error in zip(block[FILE], block["error"], strict=True):
        if isinstance(error, str):
            write_errors(errors_out, paths[int(index)], [json.loads(error)])
