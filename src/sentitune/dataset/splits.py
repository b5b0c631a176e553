"""Splits: clean, label-encoded, seeded train/validation(/test) frames.

Cleaning (`clean_text`) is the run's preprocessing: training, evaluation, predict, serve
and the ONNX path all apply it, as the run's config says (`clean_html`).
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from sentitune.config import DataConfig
from sentitune.dataset.labels import (
    cell_labels,
    check_multilabel_names,
    encode_labels,
    ids_to_names,
    infer_task,
    label_names_for,
)
from sentitune.dataset.sources import BUILTINS, local_builtin_root, read_source
from sentitune.errors import SentituneError


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
# A sentence ends at . ! or ? (a closing quote or bracket may follow) before a space, or at an
# HTML line break (IMDb's paragraphs). A rule, not a model: punkt and its kin need a download
# that cannot be assumed offline, and the pieces only have to look like a sentence-level
# task's rows; an abbreviation ("Mr. Smith") cuts a sentence in two.
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')\]])\s+|<br\s*/?>", re.IGNORECASE)
# Lone surrogates: bytes that were not UTF-8 (a command line's, kept by Python as
# surrogate escapes) or a broken "\ud800" escape. No tokenizer or encoder takes them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(text: str, strip_html: bool = True) -> str:
    """Unicode-normalise, drop HTML tags (IMDb's `<br />`), unescape entities, drop invisible
    format characters (zero-width spaces, soft hyphens, BOMs), squash spaces. Characters
    that are not text (lone surrogates) become U+FFFD, as undecodable bytes in files do."""
    text = unicodedata.normalize("NFKC", replace_surrogates(text))
    if strip_html:
        text = html.unescape(_TAG.sub(" ", text))
    if not text.isascii():
        text = _format_characters().sub("", text)
    return _SPACE.sub(" ", text).strip()


def sentences(text: str) -> list[str]:
    """`text` cut into its sentences (the rule above), blank pieces dropped."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece and piece.strip()]


@functools.cache
def _format_characters() -> re.Pattern:
    """Unicode's invisible format characters (category Cf), found once per process."""
    return re.compile(f"[{re.escape(_invisible())}]")


@functools.cache
def _invisible() -> str:
    return "".join(chr(code) for code in range(0x110000)
                   if unicodedata.category(chr(code)) == "Cf")


@functools.cache
def blank_characters() -> str:
    """Every character that is blank on its own (`is_blank`): whitespace (str.isspace(),
    which covers JavaScript's \\s but for U+FEFF) and the invisible format characters (Cf,
    U+FEFF among them) that cleaning removes. The server publishes this set in its
    schema's pattern."""
    spaces = {chr(code) for code in range(0x110000) if chr(code).isspace()}
    return "".join(sorted(spaces | set(_invisible())))


def replace_surrogates(text: str) -> str:
    """`text` with each lone surrogate (an undecodable byte, a broken escape) as U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def is_blank(text: str) -> bool:
    """Whether nothing is left of `text` to classify once cleaned: empty, whitespace, or
    only invisible characters such as zero-width spaces."""
    return not clean_text(text, strip_html=False)


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


def load_splits(config: DataConfig, seed: int, data_root: Path | None = None) -> Splits:
    """Read, clean, label-encode and split a source as `config` asks (a built-in dataset
    from `data_root` when given, else $SENTITUNE_DATA_DIR or the hub)."""
    encoded, names, task, notes = load_encoded(config, data_root)
    train = encoded["train"]
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
    if config.extra_data:
        from sentitune.dataset.extra import with_extra_rows

        train, notes["extra_data"] = with_extra_rows(train, config, names, task,
                                                     clean_frame)
    notes["train_validation_overlap"] = overlap_count(train, validation)
    notes["train_test_overlap"] = overlap_count(train, test)
    return Splits(train, validation, test, names, task, notes)


def load_encoded(config: DataConfig, data_root: Path | None = None
                 ) -> tuple[dict[str, pd.DataFrame], list[str], str, dict]:
    """Every split of a source cleaned and label-encoded, in source order (not yet split or
    sampled): (splits, label names, task, notes); the training split has two classes."""
    raw, names, multilabel_source = read_source(
        config.dataset, config.text_column, config.label_column, data_root
    )
    if config.validation_data:
        extra, _, _ = read_source(config.validation_data, config.text_column, config.label_column)
        raw["validation"] = extra["train"]
    notes: dict = {"text_column": raw["train"].attrs.get("text_column"), "dropped_rows": {}}
    if config.dataset in BUILTINS and (root := local_builtin_root(config.dataset, data_root)):
        notes["data_dir"] = str(root)  # where a later export or evaluate finds it again
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
            check_multilabel_names(names, config.dataset)
        elif config.task is None:  # spellings of one class (1, "positive") are one label
            task = "binary" if len(names) <= 2 else "multiclass"
    encoded = {
        split: encode_labels(frame, names, task, f"{config.dataset} ({split})")
        for split, frame in cleaned.items()
    }
    _check_classes(encoded["train"], names, task, config.dataset)
    return encoded, names, task, notes


def data_problems(splits: Splits, config: DataConfig) -> list[str]:
    """What a user should hear about the data before training on it, one sentence each:
    dropped rows, duplicates, and texts shared between splits (`splits.notes` keeps the
    counts)."""
    from sentitune.console import option

    notes, problems = splits.notes, []
    dropped = {split: n for split, n in notes.get("dropped_rows", {}).items() if n}
    if dropped:
        problems.append("rows without a text or a label were dropped: " + ", ".join(
            f"{n:,} from {split}" for split, n in dropped.items()))
    duplicates = notes.get("duplicates_in_train", 0)
    if duplicates:
        what = ("were removed" if config.drop_duplicates else
                f"are kept ({option('drop_duplicates', True)} removes them)")
        problems.append(f"{duplicates:,} training texts repeat an earlier one and {what}")
    shared = notes.get("train_validation_overlap", 0)
    if shared:
        problems.append(
            f"{shared:,} of {len(splits.validation):,} validation texts also appear in "
            "training, so validation scores flatter the model; deduplicate the data "
            f"({option('drop_duplicates', True)} does it before the hold-out) or give a separate "
            f"{option('validation_data')}")
    if notes.get("train_test_overlap", 0) and splits.test is not None:
        problems.append(f"{notes['train_test_overlap']:,} of {len(splits.test):,} test texts "
                        "also appear in training, so test scores flatter the model")
    return problems


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
        frame["label"] = [ids_to_names(cell, source_names, task, where)
                          for cell in frame["label"]]
    return encode_labels(frame, names, task, where), split
