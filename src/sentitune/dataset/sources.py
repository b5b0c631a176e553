"""Sources: a built-in name, a file or an aclImdb/ folder, read into raw frames.

Every source ends as pandas frames with two columns, `text` and `label` (raw cells),
per split. Built-in datasets are read from `SENTITUNE_DATA_DIR` when it holds them (the
layout of the project's shared data folder), else from the Hugging Face Hub. Text and
label columns are named or guessed by one rule (`pick_column`), shared by training,
evaluation and predict.
"""

from __future__ import annotations

import gzip
import itertools
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sentitune.dataset.labels import BINARY_NAMES
from sentitune.errors import SentituneError

DATA_DIR_ENV = "SENTITUNE_DATA_DIR"
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "tweet", "comment", "body")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "target", "category", "emotion")
# GoEmotions ids 0..27 (labels.txt of the release; the hub copy stores only the ids).
GOEMOTIONS_LABELS = [
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
]


@dataclass(frozen=True)
class BuiltinDataset:
    """Where a built-in dataset lives locally and on the hub, and what its labels mean."""

    local_files: dict[str, str]
    hub_id: str
    hub_config: str | None
    hub_splits: dict[str, str]
    text_column: str
    label_column: str
    labels: list[str]  # label id i is labels[i]
    multilabel: bool = False


BUILTINS: dict[str, BuiltinDataset] = {
    "imdb": BuiltinDataset(
        {"train": "imdb/train.csv.gz", "test": "imdb/test.csv.gz"},
        "stanfordnlp/imdb", None, {"train": "train", "test": "test"},
        "text", "label", BINARY_NAMES,
    ),
    "sst2": BuiltinDataset(
        {"train": "sst2/train.tsv", "validation": "sst2/dev.tsv"},
        "nyu-mll/glue", "sst2", {"train": "train", "validation": "validation"},
        "sentence", "label", BINARY_NAMES,
    ),
    "sst5": BuiltinDataset(
        {"train": "sst5/train.tsv", "validation": "sst5/dev.tsv"},
        "SetFit/sst5", None, {"train": "train", "validation": "validation", "test": "test"},
        "sentence", "label",
        ["very negative", "negative", "neutral", "positive", "very positive"],
    ),
    "emotion": BuiltinDataset(
        {
            "train": "emotion/train.parquet",
            "validation": "emotion/validation.parquet",
            "test": "emotion/test.parquet",
        },
        "dair-ai/emotion", None, {"train": "train", "validation": "validation", "test": "test"},
        "text", "label", ["sadness", "joy", "love", "anger", "fear", "surprise"],
    ),
    "goemotions": BuiltinDataset(
        {"train": "goemotions/train.tsv", "validation": "goemotions/dev.tsv",
         "test": "goemotions/test.tsv"},
        "google-research-datasets/go_emotions", "simplified",
        {"train": "train", "validation": "validation", "test": "test"},
        "text", "label", GOEMOTIONS_LABELS, multilabel=True,
    ),
}


# ---------------------------------------------------------------- reading


def data_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt")
# The longest cell an input file may hold. Tokenizers read a whole text before truncating
# it: a 100 MB line took 13 GB in train and predict. A novel is about a million characters;
# the longest IMDb review 13,700.
MAX_CELL_CHARS = 1_000_000


def _table_kind(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    if kind not in TABLE_SUFFIXES:
        raise SentituneError(f"unsupported file type '{path.name}'; use "
                             f"{', '.join(TABLE_SUFFIXES)} (optionally .gz)")
    return kind


def iter_table(path: Path, chunk_size: int | None = None, *,
               encoding_errors: str = "strict") -> Iterator[pd.DataFrame]:
    """Frames of a CSV/TSV/JSON/JSONL/parquet/TXT file (optionally .gz), `chunk_size` rows
    at a time (the whole file at once when None): the one reader of every input file.

    A .txt file holds one text per line (column `text`). Missing cells are NaN. With
    `encoding_errors="replace"` bytes that are not UTF-8 become U+FFFD instead of failing
    the whole file (batch scoring reports those rows). A cell over MAX_CELL_CHARS
    characters fails the file, before anything tokenizes it.
    """
    path = Path(path)
    if not path.exists():
        raise SentituneError(f"file not found: {path}")
    if path.is_dir():
        raise SentituneError(f"{path} is a folder; give a data file or an aclImdb/ folder")
    kind = _table_kind(path)
    rows = 0
    for frame in _read_frames(path, kind, chunk_size, encoding_errors):
        _check_cell_sizes(frame, path, rows)
        rows += len(frame)
        yield frame


def _check_cell_sizes(frame: pd.DataFrame, path: Path, first_row: int) -> None:
    for column in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[column].dtype):
            continue
        for row, cell in enumerate(frame[column]):
            if isinstance(cell, str) and len(cell) > MAX_CELL_CHARS:
                raise SentituneError(
                    f"{path}: row {first_row + row + 1}, column '{column}' holds {len(cell):,} "
                    f"characters, over the limit of {MAX_CELL_CHARS:,}; split or shorten it")


def _read_frames(path: Path, kind: str, chunk_size: int | None,
                 encoding_errors: str) -> Iterator[pd.DataFrame]:
    compression = "gzip" if path.suffix.lower() == ".gz" else None
    try:
        if kind == ".parquet":
            import pyarrow.parquet as pq

            parquet = pq.ParquetFile(path)
            if chunk_size is None:
                yield parquet.read().to_pandas()
            else:
                for batch in parquet.iter_batches(batch_size=chunk_size):
                    yield batch.to_pandas()
        elif kind == ".json":
            try:
                yield pd.read_json(path, compression=compression,
                                   encoding_errors=encoding_errors)
            except ValueError:
                yield from _chunks(pd.read_json(path, lines=True, compression=compression,
                                                chunksize=chunk_size,
                                                encoding_errors=encoding_errors), chunk_size)
        elif kind == ".jsonl":
            yield from _chunks(pd.read_json(path, lines=True, compression=compression,
                                            chunksize=chunk_size,
                                            encoding_errors=encoding_errors), chunk_size)
        elif kind == ".txt":
            opener = gzip.open if compression else open
            with opener(path, "rt", encoding="utf-8", errors=encoding_errors) as handle:
                lines = (line.rstrip("\r\n") for line in handle)
                while chunk := list(itertools.islice(lines, chunk_size)):
                    yield pd.DataFrame({"text": chunk})
        else:
            # quoting=3 (none) for TSV: GLUE files contain bare quote characters.
            reader = pd.read_csv(
                path, sep="\t" if kind == ".tsv" else ",", quoting=3 if kind == ".tsv" else 0,
                compression=compression, keep_default_na=False, na_values=[""],
                encoding="utf-8", encoding_errors=encoding_errors, chunksize=chunk_size)
            yield from _chunks(reader, chunk_size)
    except (UnicodeDecodeError, ValueError, OSError, pd.errors.ParserError) as exc:
        raise SentituneError(
            f"could not read {path} as {kind.lstrip('.')}: it looks binary or malformed "
            f"({exc.__class__.__name__}); give a UTF-8 CSV/TSV/JSONL or parquet file"
        ) from None


def _chunks(reader, chunk_size: int | None) -> Iterator[pd.DataFrame]:
    """pandas gives a frame without chunksize and an iterator of frames with one."""
    if chunk_size is None:
        yield reader
    else:
        yield from reader


def read_table(path: Path) -> pd.DataFrame:
    """A whole input file as one frame (see `iter_table`)."""
    return next(iter_table(Path(path)))


def read_aclimdb(folder: Path) -> dict[str, pd.DataFrame]:
    """The official aclImdb/ layout: {train,test}/{pos,neg}/*.txt; train/unsup is dropped."""
    splits = {}
    for split in ("train", "test"):
        rows = []
        for label, sub in ((0, "neg"), (1, "pos")):
            for file in sorted((folder / split / sub).glob("*.txt")):
                rows.append((file.read_text(encoding="utf-8", errors="replace"), label))
        if rows:
            splits[split] = pd.DataFrame(rows, columns=["text", "label"])
    if "train" not in splits:
        raise SentituneError(f"{folder} has no train/pos or train/neg texts; is it aclImdb/?")
    return splits


def is_aclimdb(path: Path) -> bool:
    return path.is_dir() and (path / "train" / "pos").is_dir()


def local_builtin_root(name: str, root: Path | None = None) -> Path | None:
    """The folder a built-in dataset is read from (`root`, else $SENTITUNE_DATA_DIR) when it
    holds the dataset's files; None when it would come from the hub."""
    root = root or data_dir()
    if root is not None and (root / BUILTINS[name].local_files["train"]).exists():
        return root.resolve()
    return None


def _read_builtin(name: str, root: Path | None = None
                  ) -> tuple[dict[str, pd.DataFrame], BuiltinDataset]:
    spec = BUILTINS[name]
    root = root or data_dir()
    if root is not None and (root / spec.local_files["train"]).exists():
        frames = {
            split: read_table(root / rel)
            for split, rel in spec.local_files.items()
            if (root / rel).exists()
        }
        return frames, spec
    return _read_from_hub(name, spec), spec


def _read_from_hub(name: str, spec: BuiltinDataset) -> dict[str, pd.DataFrame]:
    import datasets

    try:
        loaded = datasets.load_dataset(spec.hub_id, spec.hub_config)
    except Exception as exc:  # the hub raises many types when offline
        where = f"{DATA_DIR_ENV}={data_dir()}" if data_dir() else f"{DATA_DIR_ENV} is not set"
        raise SentituneError(
            f"dataset '{name}' is not available locally ({where}) and could not be loaded from "
            f"the Hugging Face Hub ({exc.__class__.__name__}); set {DATA_DIR_ENV} to a folder "
            f"holding {spec.local_files['train']} or pass a file"
        ) from None
    frames = {}
    for split, hub_split in spec.hub_splits.items():
        if hub_split in loaded:
            frame = loaded[hub_split].to_pandas()
            # Hub copies name columns unlike the local files (SetFit/sst5: text;
            # go_emotions: labels).
            renames = {"text": spec.text_column, "labels": spec.label_column}
            frames[split] = frame.rename(columns={
                hub: ours for hub, ours in renames.items() if hub in frame and ours not in frame
            })
    return frames


def pick_column(frame: pd.DataFrame, wanted: str | None, candidates: Sequence[str], what: str,
                 source: str) -> str:
    columns = [str(c) for c in frame.columns]
    if wanted is not None:
        if wanted not in columns:
            raise SentituneError(
                f"{source} has no {what} column '{wanted}'; columns found: {', '.join(columns)}"
            )
        return wanted
    lowered = {c.lower(): c for c in columns}
    for candidate in candidates:
        if candidate in lowered:
            return lowered[candidate]
    flag = "--text-column" if what == "text" else "--label-column"
    raise SentituneError(
        f"{source} has no {what} column; columns found: {', '.join(columns)}; name it with {flag}"
    )


def available_splits(source: str) -> list[str]:
    """The splits a source has, without reading it: a built-in's local (or hub) splits,
    an aclImdb/ folder's train/test, a file's one `train` split."""
    if source in BUILTINS:
        spec, root = BUILTINS[source], data_dir()
        if root is not None and (root / spec.local_files["train"]).exists():
            return [s for s, rel in spec.local_files.items() if (root / rel).exists()]
        return list(spec.hub_splits)
    path = Path(source).expanduser()
    if is_aclimdb(path):
        return [s for s in ("train", "test") if (path / s / "pos").is_dir()]
    return ["train"]


def read_source(
    source: str, text_column: str | None = None, label_column: str | None = None,
    root: Path | None = None,
) -> tuple[dict[str, pd.DataFrame], list[str] | None, bool]:
    """Raw splits of a source as frames with `text` and `label` columns; a built-in one
    from `root` when given (a run's remembered data folder), else as `data_dir()` says.

    Returns (splits, label names if the source defines them, multilabel flag of the source).
    """
    if source in BUILTINS:
        frames, spec = _read_builtin(source, root)
        labels = spec.labels
        text_column = text_column or spec.text_column
        label_column = label_column or spec.label_column
        multilabel = spec.multilabel
    else:
        path = Path(source).expanduser()
        if is_aclimdb(path):
            frames, labels, multilabel = read_aclimdb(path), BINARY_NAMES, False
        elif not path.exists() and os.sep not in source and "." not in source:
            raise SentituneError(
                f"unknown dataset '{source}'; built-in: {', '.join(BUILTINS)}, or give a file path"
            )
        else:
            frames, labels, multilabel = {"train": read_table(path)}, None, False
    out = {}
    for split, frame in frames.items():
        where = f"{source} ({split})"
        text_col = pick_column(frame, text_column, TEXT_COLUMNS, "text", where)
        label_col = pick_column(frame, label_column, LABEL_COLUMNS, "label", where)
        out[split] = pd.DataFrame({"text": frame[text_col], "label": frame[label_col]})
        out[split].attrs["text_column"] = text_col  # predict scores the same column
    return out, labels, multilabel
