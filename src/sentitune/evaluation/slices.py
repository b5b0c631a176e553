"""Slices: named subsets of an evaluation set, for error analysis.

A slice is a rule that says whether one example belongs to it ("contains a negation",
"longer than the 75th percentile", "true class is negative"). An example can sit in many
slices. `assign_slices` lists the slices of every example and `slice_metrics` scores
the model on each, so a report can say "accuracy is 0.91 overall but 0.72 on negations".

Built-in text slices (all case-insensitive, whole words; curly apostrophes count as '):

- ``negation``: not, no, never, nothing, nobody, none, neither, nor, nowhere, without,
  hardly, barely, scarcely, cannot, any "n't" contraction ("didn't", "isn't", and the
  tokenised "does n't" of SST), the apostrophe-less forms common in reviews ("dont",
  "didnt", "cant", ...), and the phrase "anything but" ("anything but good" = not good).
- ``contrast``: but, yet, although, though, however, whereas, nevertheless, nonetheless,
  despite, "even so", "on the other hand".
- ``intensifier``: very, really, extremely, so, totally, absolutely, incredibly, utterly,
  completely, highly, truly, super, quite, such, ...
- ``question`` (contains "?") and ``exclamation`` (contains "!").

Decisions on tricky cases. A slice should hold the examples whose *sentiment* is shaped by
the cue, so a keyword that is part of an idiom without that meaning does not count:

- Not negation: "not only", "not just", "nothing but", "no doubt", "no wonder",
  "no matter", "can't help but". "not only good but great" and "nothing but praise" are
  praise, not negated praise. Negations that do flip or soften sentiment stay in, idiom
  or not: "not bad", "couldn't be happier", "can't recommend it enough" are exactly the
  hard cases.
- Not contrast: the "but" of "nothing but", "anything but", "all but", "can't help but"
  and "not only/just X but (also) Y" (it adds, it does not oppose); temporal
  "yet" ("not yet", "yet another", "yet again", "as yet", "yet" closing a sentence);
  "still" is left out entirely because it is mostly temporal ("still works").
- Not intensifier: discourse "so" ("so I left", "so that", "so far", "I think so",
  "and so on", "So, ...") and "such as". "too" is left out: mostly "also" ("loved it too").

These are heuristics: a keyword list cannot parse scope ("no" as an interjection still
counts as negation). They are meant to be good enough to find weak spots, not to be a
linguistic analysis.

Other slices:

- ``length:q1`` .. ``length:q4``: token-length quartiles of the evaluated set. Each
  example lands in exactly one bucket (q1: length <= 25th percentile, q2: <= median,
  q3: <= 75th percentile, q4: above), so the buckets add up to the total; with many equal
  lengths a bucket can be empty and is then left out of the metrics.
- ``truncated``: token length > ``max_length`` (pass lengths measured *before*
  truncation, or nothing can exceed it).
- ``class:<name>``: the true class, one per example, adding up to the total.

Add your own with `Slice(name, description, rule)`, where rule is a regex (searched
case-insensitively) or a function ``str -> bool``, and either `register_slice` it or pass
it as ``extra_slices=``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from sentitune.errors import SentituneError

Rule = str | Callable[[str], bool]

# Names computed from lengths and labels, not from text rules; user slices may not take them.
RESERVED_PREFIXES = ("length:", "class:")
RESERVED_NAMES = ("all", "truncated")


@dataclass(frozen=True)
class Slice:
    """A named text rule: a regex searched case-insensitively, or a function str -> bool."""

    name: str
    description: str
    rule: Rule

    def matches(self, text: str) -> bool:
        """Whether `text` belongs to this slice."""
        if isinstance(self.rule, str):
            return re.search(self.rule, text, flags=re.IGNORECASE) is not None
        return bool(self.rule(text))


# Single keywords, whitespace-separated; phrases and exceptions are in the rules below.
# Apostrophe-less contractions are common in reviews; "cant"/"wont" as nouns are rare.
NEGATION_WORDS = """not no never nothing nobody none neither nor nowhere without hardly barely
    scarcely cannot dont doesnt didnt isnt wasnt arent werent cant couldnt wouldnt shouldnt
    wont havent hasnt hadnt aint"""
CONTRAST_WORDS = "but yet although though however whereas nevertheless nonetheless despite"
INTENSIFIER_WORDS = """very really extremely so totally absolutely incredibly utterly completely
    highly truly super quite such insanely remarkably exceptionally seriously thoroughly deeply
    hugely immensely ridiculously"""


def _words(*alternatives: str) -> str:
    """Whole-word regex for any of `alternatives` (regex fragments)."""
    return r"\b(?:" + "|".join(alternatives) + r")\b"


class _KeywordRule:
    """Matches when a keyword occurs outside every exception span (case-insensitive).

    Exceptions are matched on the same text; a keyword inside one (the "not" of
    "not only") does not count, but another keyword elsewhere in the text still does.
    """

    def __init__(self, keywords: str, exceptions: str) -> None:
        self.keywords = re.compile(keywords, re.IGNORECASE)
        self.exceptions = re.compile(exceptions, re.IGNORECASE)

    def __call__(self, text: str) -> bool:
        text = text.replace("\u2019", "'").replace("\u2018", "'")
        excluded = [m.span() for m in self.exceptions.finditer(text)]
        return any(
            not any(start <= m.start() and m.end() <= end for start, end in excluded)
            for m in self.keywords.finditer(text)
        )


_NEGATION = _KeywordRule(
    # "n't" glued to its verb ("didn't") or split off by a tokenizer ("did n't").
    keywords=r"(?<![\w'])\w*n't\b|"
    + _words(
        *NEGATION_WORDS.split(),
        r"anything\s+but",
    ),
    exceptions=_words(
        r"not\s+only", r"not\s+just", r"nothing\s+but", r"no\s+doubt", r"no\s+wonder",
        r"no\s+matter", r"(?:can't|cannot|can\s+not|couldn't)\s+help\s+but",
    ),
)

_CONTRAST = _KeywordRule(
    keywords=_words(
        *CONTRAST_WORDS.split(),
        r"even\s+so", r"on\s+the\s+other\s+hand",
    ),
    exceptions=_words(
        r"(?:nothing|anything|all)\s+but", r"help\s+but",
        r"not\s+yet", r"yet\s+(?:another|again)", r"as\s+yet",
        # "not only X but (also) Y": the whole stretch, so the "but" is covered.
        r"not\s+(?:only|just)\b[^.!?;]*?\bbut",
    )
    # "yet" closing a sentence is temporal: "it hasn't arrived yet."
    + r"|\byet\b(?=\s*(?:[.!?]|$))",
)

_INTENSIFIER = _KeywordRule(
    keywords=_words(
        *INTENSIFIER_WORDS.split(),
    ),
    # Discourse "so" is followed by a clause ("so I left", "so that"), closes one
    # ("I think so", "and so on") or opens one before a comma ("So, the plot ...").
    exceptions=_words(
        r"so\s+(?:i|we|you|he|she|they|it|the|this|that|there|if|what|now|far|on|called|to)",
        r"such\s+as",
    )
    + r"|\bso\b(?=\s*(?:[.!?,;:]|$))",
)

BUILTIN_SLICES: tuple[Slice, ...] = (
    Slice("negation", "contains a negation (not, never, n't, ...)", _NEGATION),
    Slice("contrast", "contains a contrast (but, although, however, ...)", _CONTRAST),
    Slice("intensifier", "contains an intensifier (very, extremely, so, ...)", _INTENSIFIER),
    Slice("question", "contains a question mark", lambda text: "?" in text),
    Slice("exclamation", "contains an exclamation mark", lambda text: "!" in text),
)

_registered: dict[str, Slice] = {}


def _check_slice(item: Slice, taken: set[str]) -> None:
    """Raise SentituneError when `item` has a bad name or regex."""
    if not item.name or item.name in taken:
        raise SentituneError(f"slice name {item.name!r} is empty or already used; pick another")
    if item.name in RESERVED_NAMES or item.name.startswith(RESERVED_PREFIXES):
        raise SentituneError(
            f"slice name {item.name!r} is reserved (all, truncated, length:*, class:*); "
            "pick another"
        )
    if isinstance(item.rule, str):
        try:
            re.compile(item.rule)
        except re.error as exc:
            raise SentituneError(
                f"slice {item.name!r} has an invalid regex {item.rule!r} ({exc}); fix the pattern"
            ) from None
    elif not callable(item.rule):
        raise SentituneError(
            f"slice {item.name!r} rule must be a regex string or a function str -> bool"
        )


def register_slice(item: Slice) -> None:
    """Add `item` to the text slices every later `assign_slices` call applies."""
    _check_slice(item, {s.name for s in text_slices()})
    _registered[item.name] = item


def text_slices(extra_slices: Sequence[Slice] = ()) -> list[Slice]:
    """Built-in, registered and `extra_slices` text slices, in that order."""
    result = [*BUILTIN_SLICES, *_registered.values()]
    taken = {s.name for s in result}
    for item in extra_slices:
        _check_slice(item, taken)
        taken.add(item.name)
        result.append(item)
    return result


def _length_buckets(token_lengths: Sequence[int]) -> list[str]:
    """`length:q1`..`length:q4` per example, by quartiles of these lengths."""
    lengths = np.asarray(token_lengths, dtype=float)
    edges = np.quantile(lengths, [0.25, 0.5, 0.75])
    # side="left": a length equal to an edge belongs to the lower bucket.
    return [f"length:q{i + 1}" for i in np.searchsorted(edges, lengths, side="left")]


def assign_slices(
    texts: Sequence[str],
    token_lengths: Sequence[int] | None = None,
    max_length: int | None = None,
    true_labels: Sequence[int | str] | None = None,
    label_names: Sequence[str] | None = None,
    extra_slices: Sequence[Slice] = (),
) -> list[list[str]]:
    """The slice names of every text, in a fixed order.

    Length buckets need `token_lengths` (untruncated), `truncated` also `max_length`, and
    class slices `true_labels`: names, or indices into `label_names`.
    """
    rules = text_slices(extra_slices)
    n = len(texts)
    for what, values in (("token_lengths", token_lengths), ("true_labels", true_labels)):
        if values is not None and len(values) != n:
            raise SentituneError(f"{what} has {len(values)} entries for {n} texts; pass one each")
    buckets = _length_buckets(token_lengths) if token_lengths is not None and n else [""] * n

    result = []
    for i, text in enumerate(texts):
        names = [rule.name for rule in rules if rule.matches(text)]
        if token_lengths is not None:
            names.append(buckets[i])
            if max_length is not None and token_lengths[i] > max_length:
                names.append("truncated")
        if true_labels is not None:
            names.append(f"class:{_label_name(true_labels[i], label_names)}")
        result.append(names)
    return result


def _label_name(label: int | str, label_names: Sequence[str] | None) -> str:
    """A label as its name: names pass through, indices are looked up in `label_names`."""
    if isinstance(label, str):
        return label
    if label_names is None:
        return str(label)
    return label_names[int(label)]


def _slice_order(name: str, label_names: Sequence[str], rules: Sequence[str]
                 ) -> tuple[int, int, str]:
    """Sort key: all, text slices (rule order), length buckets, truncated, classes (label order)."""
    if name == "all":
        return (0, 0, name)
    if name.startswith("length:"):
        return (2, 0, name)
    if name == "truncated":
        return (3, 0, name)
    if name.startswith("class:"):
        label = name.removeprefix("class:")
        return (4, label_names.index(label) if label in label_names else len(label_names), name)
    return (1, rules.index(name) if name in rules else len(rules), name)


def slice_metrics(
    slice_lists: Sequence[Sequence[str]],
    y_true: Sequence[int],
    y_pred: Sequence[int],
    label_names: Sequence[str],
) -> dict[str, dict[str, float | int]]:
    """Count, accuracy, macro-F1, error count and share of the total per slice.

    Labels are class indices, or multi-hot rows for multi-label (accuracy is then exact
    match and an error is an example with any label wrong).
    Starts with ``all`` (the whole set, for comparison); empty slices are left out.
    Per-class slices (``class:NAME``) hold one true class, where macro-F1 means nothing:
    they get ``f1_macro`` None, and their accuracy is that class's recall.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    n = len(y_true)
    if not (len(slice_lists) == n == len(y_pred)):
        raise SentituneError(
            f"slice_lists, y_true and y_pred differ in length ({len(slice_lists)}, {n}, "
            f"{len(y_pred)}); pass one entry per example"
        )
    if n and y_true.ndim == 1 and (
        y_true.min() < 0 or max(y_true.max(), y_pred.max()) >= len(label_names)
    ):
        raise SentituneError(
            f"labels must be indices into the {len(label_names)} label names; got values "
            "outside that range"
        )

    members: dict[str, list[int]] = {"all": list(range(n))} if n else {}
    for i, names in enumerate(slice_lists):
        for name in names:
            members.setdefault(name, []).append(i)

    result = {}
    rules = [s.name for s in text_slices()]
    for name in sorted(members, key=lambda name: _slice_order(name, label_names, rules)):
        idx = members[name]
        t, p = y_true[idx], y_pred[idx]
        wrong = (t != p).reshape(len(idx), -1).any(axis=1)
        result[name] = {
            "count": len(idx),
            "accuracy": float(accuracy_score(t, p)),
            "f1_macro": (None if name.startswith("class:")
                         else float(f1_score(t, p, average="macro", zero_division=0))),
            "errors": int(wrong.sum()),
            "share": len(idx) / n,
        }
    return result
