"""Labels: what a label cell means, which task a column implies, names and ids.

Sentiment spellings (0/1, neg/pos, negative/positive, ...) become the names
["negative", "positive"]; lists or `a|b` / `a,b` cells mean multi-label.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from sentitune.errors import SentituneError

BINARY_NAMES = ["negative", "positive"]
_NEGATIVE = {"0", "neg", "negative", "bad", "false", "-1"}
_POSITIVE = {"1", "pos", "positive", "good", "true"}
_NEUTRAL = {"neutral", "neu", "mixed"}
SENTIMENT_NAMES = ["negative", "neutral", "positive"]
MULTILABEL_SEPARATORS = re.compile(r"\s*[,|]\s*")

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


def check_multilabel_names(names: list[str], source: str) -> None:
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
    if _spellings_of(lowered, (_NEGATIVE, _POSITIVE)):
        return list(BINARY_NAMES)
    if all(re.fullmatch(r"-?\d+", k) for k in keys):
        return [str(k) for k in sorted(int(k) for k in keys)]
    if _spellings_of(lowered, (_NEGATIVE, _NEUTRAL, _POSITIVE)):
        return list(SENTIMENT_NAMES)
    sentimentish = lowered & known
    unknown = [k for k in keys if k.lower() not in known]
    if len(sentimentish) >= 2 and unknown:
        raise SentituneError(
            f"unknown label value(s) {', '.join(map(repr, unknown[:5]))} among sentiment labels; "
            "fix them or map them to positive/negative"
        )
    return keys


def _spellings_of(keys: set[str], groups: tuple[set[str], ...]) -> bool:
    """Whether `keys` spell exactly these sentiment classes, each at least once, however
    mixed (0, 1, "negative", "positive" is two classes). Two numbers in one class (-1 and 0)
    are not spellings of it: such numbers are classes of their own."""
    if not (keys <= set().union(*groups) and all(keys & group for group in groups)):
        return False
    return all(sum(bool(re.fullmatch(r"-?\d+", k)) for k in keys & group) <= 1
               for group in groups)


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


def ids_to_names(cell: object, names: list[str], task: str, source: str) -> object:
    def name(value: object) -> object:
        key = _label_key(value)
        return names[int(key)] if key.isdigit() and int(key) < len(names) else value

    named = [name(v) for v in cell_labels(cell, task, source)]
    return named if task == "multilabel" else named[0]
