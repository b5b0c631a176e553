"""Data: from a name, file or folder to clean, labelled, seeded splits.

Every source ends as pandas frames with two columns, `text` (str) and `label` (an int
id, or a list of ids for multi-label), plus the ordered label names. Built-in datasets
are read from `SENTITUNE_DATA_DIR` when it holds them (the layout of the project's
shared data folder), else from the Hugging Face Hub.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from sentitune.config import DataConfig
from sentitune.errors import SentituneError

DATA_DIR_ENV = "SENTITUNE_DATA_DIR"
BINARY_NAMES = ["negative", "positive"]
_NEGATIVE = {"0", "neg", "negative", "bad", "false", "-1"}
_POSITIVE = {"1", "pos", "positive", "good", "true"}
_NEUTRAL = {"neutral", "neu", "mixed"}
SENTIMENT_NAMES = ["negative", "neutral", "positive"]
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "tweet", "comment", "body")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "target", "category", "emotion")
MULTILABEL_SEPARATORS = re.compile(r"\s*[,|]\s*")
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


@dataclass
class Splits:
    """Clean, labelled splits plus what was done to get there."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame | None
    labels: list[str]
    task: str
    notes: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """Hash of the exact training and validation rows: two runs on the same data agree."""
        digest = hashlib.sha256()
        for frame in (self.train, self.validation):
            for text, label in zip(frame["text"], frame["label"], strict=True):
                digest.update(f"{text}\x1f{label}\x1e".encode())
        return digest.hexdigest()[:16]


# ---------------------------------------------------------------- cleaning


_TAG = re.compile(r"<[^>]{0,200}>")
_SPACE = re.compile(r"\s+")


def clean_text(text: str, strip_html: bool = True) -> str:
    """Unicode-normalise, drop HTML tags (IMDb's `<br />`), unescape entities, squash spaces."""
    text = unicodedata.normalize("NFKC", text)
    if strip_html:
        text = html.unescape(_TAG.sub(" ", text))
    return _SPACE.sub(" ", text).strip()


# ---------------------------------------------------------------- reading


def data_dir() -> Path | None:
    value = os.environ.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else None


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV/TSV/JSON/JSONL/parquet file (optionally .gz) into a frame."""
    if not path.exists():
        raise SentituneError(f"file not found: {path}")
    if path.is_dir():
        raise SentituneError(f"{path} is a folder; give a data file or an aclImdb/ folder")
    suffixes = [s.lower() for s in path.suffixes if s.lower() != ".gz"]
    kind = suffixes[-1] if suffixes else ""
    compression = "gzip" if path.suffix.lower() == ".gz" else None
    try:
        if kind == ".parquet":
            return pd.read_parquet(path)
        if kind == ".jsonl":
            return pd.read_json(path, lines=True, compression=compression)
        if kind == ".json":
            try:
                return pd.read_json(path, compression=compression)
            except ValueError:
                return pd.read_json(path, lines=True, compression=compression)
        if kind in (".csv", ".tsv", ".txt"):
            sep = "\t" if kind == ".tsv" else ","
            # quoting=3 (none) for TSV: GLUE files contain bare quote characters.
            quoting = 3 if kind == ".tsv" else 0
            return pd.read_csv(
                path, sep=sep, quoting=quoting, compression=compression, keep_default_na=False,
                na_values=[""], encoding="utf-8",
            )
    except (UnicodeDecodeError, ValueError, OSError, pd.errors.ParserError) as exc:
        raise SentituneError(
            f"could not read {path} as {kind.lstrip('.') or 'a table'}: it looks binary or "
            f"malformed ({exc.__class__.__name__}); give a UTF-8 CSV/TSV/JSONL or parquet file"
        ) from None
    raise SentituneError(
        f"unsupported file type '{path.name}'; use .csv, .tsv, .json, .jsonl or .parquet"
    )


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


def _read_builtin(name: str) -> tuple[dict[str, pd.DataFrame], BuiltinDataset]:
    spec = BUILTINS[name]
    root = data_dir()
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


def _pick_column(frame: pd.DataFrame, wanted: str | None, candidates: Sequence[str], what: str,
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


def read_source(
    source: str, text_column: str | None = None, label_column: str | None = None
) -> tuple[dict[str, pd.DataFrame], list[str] | None, bool]:
    """Raw splits of a source as frames with `text` and `label` columns.

    Returns (splits, label names if the source defines them, multilabel flag of the source).
    """
    if source in BUILTINS:
        frames, spec = _read_builtin(source)
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
        text_col = _pick_column(frame, text_column, TEXT_COLUMNS, "text", where)
        label_col = _pick_column(frame, label_column, LABEL_COLUMNS, "label", where)
        out[split] = pd.DataFrame({"text": frame[text_col], "label": frame[label_col]})
    return out, labels, multilabel


# ---------------------------------------------------------------- labels


def _as_label_list(value: object) -> list[str] | None:
    """A multi-label cell as a list of strings, or None for a single label."""
    if isinstance(value, list | tuple | np.ndarray):
        return [str(v).strip() for v in value]
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("[") and stripped.endswith("]"):
            try:
                return [str(v).strip() for v in json.loads(stripped)]
            except json.JSONDecodeError:
                pass
        if MULTILABEL_SEPARATORS.search(stripped):
            return [p for p in MULTILABEL_SEPARATORS.split(stripped) if p]
    return None


def cell_labels(value: object, task: str, source: str) -> list[object]:
    """The labels of one cell: its list for multi-label, exactly one label otherwise.

    Ambiguous, hence an error: a cell holding several labels when the task is single-label
    (e.g. `--task multiclass` on `anger|fear`). A one-item list such as `["a, b"]` is one
    label, which is how a single-label name containing ',' or '|' is written.
    """
    listed = _as_label_list(value)
    if task == "multilabel":
        return [value] if listed is None else listed
    if listed is None:
        return [value]
    if len(listed) == 1:
        return listed
    raise SentituneError(
        f"{source}: label {value!r} holds several labels but the task is {task}; train with "
        "--task multilabel (or without --task), or write a label name containing ',' or '|' "
        'as a one-item JSON list such as ["a, b"]'
    )


def _check_multilabel_names(names: list[str], source: str) -> None:
    """A multi-label name containing a separator would make `a,b` mean one label or two."""
    clashing = [name for name in names if MULTILABEL_SEPARATORS.search(name)]
    if clashing:
        raise SentituneError(
            f"{source}: multi-label name {clashing[0]!r} contains ',' or '|', so a cell "
            f"{clashing[0]!r} could be one label or several; rename the label without them"
        )


def infer_task(labels: pd.Series, multilabel_source: bool) -> str:
    if multilabel_source or any(_as_label_list(v) is not None for v in labels):
        return "multilabel"
    return "binary" if labels.nunique() <= 2 else "multiclass"


def _label_key(value: object) -> str:
    """Canonical string of a label cell: 1, 1.0 and '1' are the same label."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def label_names_for(values: Sequence[object]) -> list[str]:
    """Ordered names for the distinct labels of a user file.

    Sentiment spellings (0/1, neg/pos, negative/positive, ...) become
    ["negative", "positive"]; integers keep their numeric order; other strings sort.
    """
    keys = sorted({_label_key(v) for v in values})
    lowered = {k.lower() for k in keys}
    known = _NEGATIVE | _POSITIVE | _NEUTRAL
    if len(keys) <= 2 and lowered <= (_NEGATIVE | _POSITIVE) and not (
        lowered <= _NEGATIVE or lowered <= _POSITIVE
    ):
        return list(BINARY_NAMES)
    if all(re.fullmatch(r"-?\d+", k) for k in keys):
        return [str(k) for k in sorted(int(k) for k in keys)]
    if len(keys) == 3 and lowered <= known and all(lowered & group for group in
                                                    (_NEGATIVE, _POSITIVE, _NEUTRAL)):
        return list(SENTIMENT_NAMES)
    sentimentish = lowered & known
    unknown = [k for k in keys if k.lower() not in known]
    if len(sentimentish) >= 2 and unknown:
        raise SentituneError(
            f"unknown label value(s) {', '.join(map(repr, unknown[:5]))} among sentiment labels; "
            "fix them or map them to positive/negative"
        )
    return keys


def encode_labels(frame: pd.DataFrame, names: list[str], task: str, source: str) -> pd.DataFrame:
    """Map label cells to ids of `names` (lists of ids for multi-label)."""
    lookup = {name.lower(): i for i, name in enumerate(names)}
    if names == BINARY_NAMES:
        lookup |= {k: 0 for k in _NEGATIVE} | {k: 1 for k in _POSITIVE}
    elif names == SENTIMENT_NAMES:
        lookup |= {k: 0 for k in _NEGATIVE} | {k: 1 for k in _NEUTRAL} | {k: 2 for k in _POSITIVE}
    elif not any(re.fullmatch(r"-?\d+", name) for name in names):
        lookup |= {str(i): i for i in range(len(names))}  # integer ids of named labels

    unknown: dict[str, None] = {}  # insertion-ordered set: report in order of appearance

    def one(value: object) -> int:
        key = _label_key(value).lower()
        if key not in lookup:
            unknown[str(value)] = None
            return -1
        return lookup[key]

    frame = frame.copy()
    if task == "multilabel":
        frame["label"] = [
            sorted({one(v) for v in cell_labels(cell, task, source)}) for cell in frame["label"]
        ]
    else:
        frame["label"] = [one(cell_labels(cell, task, source)[0]) for cell in frame["label"]]
    if unknown:
        shown = ", ".join(repr(v) for v in list(unknown)[:8])
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise SentituneError(
            f"{source}: unknown label {shown}{more}; expected one of: {', '.join(names)}"
        )
    return frame


# ---------------------------------------------------------------- cleaning and splitting


def clean_frame(frame: pd.DataFrame, strip_html: bool, source: str) -> tuple[pd.DataFrame, int]:
    """Clean texts and drop rows with a missing/blank text or label; error if none remain."""
    before = len(frame)
    frame = frame[frame["text"].notna() & frame["label"].notna()].copy()
    frame["text"] = [clean_text(str(t), strip_html) for t in frame["text"]]
    frame = frame[[len(text) > 0 for text in frame["text"]]].reset_index(drop=True)
    if frame.empty:
        raise SentituneError(f"{source}: no rows left after dropping empty texts and labels")
    return frame, before - len(frame)


def _stratify_key(frame: pd.DataFrame, task: str) -> pd.Series | None:
    if task == "multilabel":
        return None
    counts = frame["label"].value_counts()
    return frame["label"] if counts.min() >= 2 else None


def subset(frame: pd.DataFrame, n: int | None, seed: int, task: str, what: str) -> pd.DataFrame:
    """A seeded, stratified sample of n rows (all rows, shuffled, when n is None)."""
    if n is None or n == len(frame):
        return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if n > len(frame):
        raise SentituneError(
            f"--{what}-samples {n} is larger than the {len(frame)} rows available; "
            f"use at most {len(frame)}"
        )
    from sklearn.model_selection import train_test_split

    try:
        picked, _ = train_test_split(
            frame, train_size=n, random_state=seed, stratify=_stratify_key(frame, task)
        )
    except ValueError:  # too few rows per class for stratification at this size
        picked = frame.sample(n=n, random_state=seed)
    return picked.reset_index(drop=True)


def hold_out(frame: pd.DataFrame, fraction: float, seed: int, task: str):
    from sklearn.model_selection import train_test_split

    try:
        train, val = train_test_split(
            frame, test_size=fraction, random_state=seed, stratify=_stratify_key(frame, task)
        )
    except ValueError:
        train, val = train_test_split(frame, test_size=fraction, random_state=seed)
    return train.reset_index(drop=True), val.reset_index(drop=True)


def overlap_count(a: pd.DataFrame, b: pd.DataFrame | None) -> int:
    return 0 if b is None else len(set(a["text"]) & set(b["text"]))


def load_splits(config: DataConfig, seed: int) -> Splits:
    """Read, clean, label-encode and split a source as `config` asks."""
    raw, names, multilabel_source = read_source(
        config.dataset, config.text_column, config.label_column
    )
    if config.validation_data:
        extra, _, _ = read_source(config.validation_data, config.text_column, config.label_column)
        raw["validation"] = extra["train"]
    notes: dict = {"dropped_rows": {}}
    cleaned = {}
    for split, frame in raw.items():
        cleaned[split], notes["dropped_rows"][split] = clean_frame(
            frame, config.clean_html, f"{config.dataset} ({split})"
        )

    all_labels = pd.concat([f["label"] for f in cleaned.values()], ignore_index=True)
    task = config.task or infer_task(all_labels, multilabel_source)
    if names is None:
        names = label_names_for(
            [x for cell in all_labels for x in cell_labels(cell, task, config.dataset)]
        )
        if task == "multilabel":
            _check_multilabel_names(names, config.dataset)
    encoded = {
        split: encode_labels(frame, names, task, f"{config.dataset} ({split})")
        for split, frame in cleaned.items()
    }
    train = encoded["train"]
    _check_classes(train, names, task, config.dataset)

    notes["duplicates_in_train"] = int(train["text"].duplicated().sum())
    if config.drop_duplicates:
        train = train.drop_duplicates("text").reset_index(drop=True)
    if "validation" in encoded:
        validation = encoded["validation"]
    else:
        train, validation = hold_out(train, config.val_fraction, seed, task)
        notes["validation_from"] = f"{config.val_fraction:.0%} stratified hold-out of train"
    train = subset(train, config.train_samples, seed, task, "train")
    validation = subset(validation, config.val_samples, seed, task, "val")
    test = encoded.get("test")
    notes["train_validation_overlap"] = overlap_count(train, validation)
    notes["train_test_overlap"] = overlap_count(train, test)
    return Splits(train, validation, test, names, task, notes)


def _check_classes(train: pd.DataFrame, names: list[str], task: str, source: str) -> None:
    if task == "multilabel":
        present = {i for ids in train["label"] for i in ids}
    else:
        present = set(train["label"])
    if len(present) < 2:
        only = ", ".join(names[i] for i in sorted(present)) or "none"
        raise SentituneError(
            f"{source}: only one class present in the training data ({only}); "
            "a classifier needs at least two"
        )
    if task == "binary" and len(names) > 2:
        raise SentituneError(
            f"--task binary but {source} has {len(names)} classes ({', '.join(names)}); "
            "use --task multiclass"
        )


def load_eval_split(
    source: str,
    split: str | None,
    names: list[str],
    task: str,
    text_column: str | None = None,
    label_column: str | None = None,
    strip_html: bool = True,
) -> tuple[pd.DataFrame, str]:
    """One split of a source, labels mapped onto a trained run's label names.

    Default split: test when the source has one, else validation, else the file itself.
    """
    raw, source_names, _ = read_source(source, text_column, label_column)
    if split is None:
        split = next(s for s in ("test", "validation", "train") if s in raw)
    if split not in raw:
        raise SentituneError(f"{source} has no '{split}' split; it has: {', '.join(raw)}")
    where = f"{source} ({split})"
    frame, _ = clean_frame(raw[split], strip_html, where)
    if source_names is not None and source_names != names:
        # The source stores ids of its own label list: name them first, so a run whose
        # labels are ordered differently (e.g. sorted names from a file) is scored against
        # the right classes instead of the same ids.
        frame["label"] = [_ids_to_names(cell, source_names, task, where)
                          for cell in frame["label"]]
    return encode_labels(frame, names, task, where), split


def _ids_to_names(cell: object, names: list[str], task: str, source: str) -> object:
    def name(value: object) -> object:
        key = _label_key(value)
        return names[int(key)] if key.isdigit() and int(key) < len(names) else value

    named = [name(v) for v in cell_labels(cell, task, source)]
    return named if task == "multilabel" else named[0]
