"""Texts longer than the model's max length: which tokens it sees, or every window of them.

    head        the first tokens (what tokenizers do by default)
    tail        the last tokens
    head+tail   the first quarter and the last three quarters of the budget: Sun et al.
                (2019, "How to fine-tune BERT for text classification?") kept the first 128
                and last 382 of 512 tokens and found it best on IMDb

With `long_text="chunk"`, inference instead scores every window of `max_length` tokens
(neighbours share `stride` tokens) and averages the windows' logits (`aggregate`).

Everything here works on token ids without special tokens; the special tokens of the
tokenizer's own single-sequence template ([CLS] ... [SEP], <s> ... </s>) are added around
each kept span, so training (transformers' tokenizer) and inference (the Rust tokenizer it
wraps) build identical inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sentitune.config import TRUNCATIONS
from sentitune.errors import SentituneError

HEAD_SHARE = 0.25  # of the token budget, for head+tail (Sun et al.: 128 of 510)


@dataclass(frozen=True)
class Template:
    """The special tokens a tokenizer puts around one sequence, and its token type id."""

    prefix: tuple[int, ...]
    suffix: tuple[int, ...]
    type_id: int

    @classmethod
    def of(cls, tokenizer) -> Template:
        """Read from a `tokenizers.Tokenizer` by post-processing a one-word text."""
        plain = tokenizer.encode("a", add_special_tokens=False)
        full = tokenizer.post_process(plain)
        content = [i for i, special in enumerate(full.special_tokens_mask) if not special]
        first, last = content[0], content[-1]
        return cls(tuple(full.ids[:first]), tuple(full.ids[last + 1:]), full.type_ids[first])

    @property
    def size(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def wrap(self, ids: Sequence[int]) -> tuple[list[int], list[int]]:
        """(token ids, token type ids) of `ids` with the special tokens around them."""
        row = [*self.prefix, *ids, *self.suffix]
        return row, [self.type_id] * len(row)


def budget(max_length: int, template: Template) -> int:
    """Text tokens that fit in `max_length` beside the special tokens."""
    room = max_length - template.size
    if room < 2:
        raise SentituneError(f"--max-length {max_length} leaves no room for text beside the "
                             f"{template.size} special tokens; raise it")
    return room


def keep(ids: Sequence[int], room: int, truncation: str) -> list[int]:
    """The `room` tokens of `ids` that `truncation` keeps (all of them when they fit)."""
    if len(ids) <= room:
        return list(ids)
    if truncation == "head":
        return list(ids[:room])
    if truncation == "tail":
        return list(ids[len(ids) - room:])
    if truncation == "head+tail":
        head = max(1, int(room * HEAD_SHARE))
        return [*ids[:head], *ids[len(ids) - (room - head):]]
    raise SentituneError(f"--truncation must be one of {', '.join(TRUNCATIONS)}, not "
                         f"'{truncation}'")


def window_starts(n_tokens: int, room: int, stride: int) -> list[int]:
    """Where each window of `room` tokens starts so that neighbours share `stride` tokens
    and the last one ends with the text (it may then share more)."""
    if n_tokens <= room:
        return [0]
    step = room - stride
    starts = list(range(0, n_tokens - room, step))
    return [*starts, n_tokens - room]


def resolve_stride(stride: int | None, max_length: int, room: int) -> int:
    """The overlap in tokens: `stride`, or a quarter of max_length when None."""
    stride = max_length // 4 if stride is None else stride
    if not 0 <= stride < room:
        raise SentituneError(f"--stride must be between 0 and {room - 1} (the tokens a window "
                             f"of --max-length {max_length} holds, less one), got {stride}")
    return stride


def aggregate(window_logits: np.ndarray, owners: np.ndarray, n_texts: int) -> np.ndarray:
    """One row of logits per text: the mean of its windows' logits.

    Every window counts alike, so one confident window cannot outvote the rest of a review
    the way the most confident window would; benchmarks/long_text.py scores this rule next
    to the mean of probabilities and the most confident window on IMDb test reviews.
    """
    sums = np.zeros((n_texts, window_logits.shape[1]), dtype=np.float64)
    np.add.at(sums, owners, window_logits)
    counts = np.bincount(owners, minlength=n_texts)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)


def transformers_encoding(tokenizer, texts: Sequence[str], max_length: int,
                          truncation: str) -> dict[str, list[list[int]]]:
    """What a transformers (fast) tokenizer would return for `texts` (input_ids,
    attention_mask, token_type_ids when it emits them), with the tokens `truncation` keeps:
    training and export encode through this, inference through `Truncator` directly."""
    from tokenizers import Tokenizer

    # A copy: the Truncator switches the tokenizer's own truncation and padding off.
    rust = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    ids, type_ids, _ = Truncator(rust, max_length, truncation).encode(texts)
    encoded = {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}
    if "token_type_ids" in tokenizer.model_input_names:
        encoded["token_type_ids"] = type_ids
    return encoded


class Truncator:
    """A `tokenizers.Tokenizer` that keeps the tokens `truncation` says, or every window.

    The tokenizer's own truncation and padding are switched off (it is changed in place:
    give it a copy when others use it).
    """

    def __init__(self, tokenizer, max_length: int, truncation: str = "head") -> None:
        tokenizer.no_padding()
        tokenizer.no_truncation()
        self._tokenizer = tokenizer
        self._template = Template.of(tokenizer)
        self.room = budget(max_length, self._template)
        keep([], self.room, truncation)  # an unknown strategy fails here, not mid-batch
        self.max_length = max_length
        self.truncation = truncation

    def vocabulary(self) -> dict[str, int]:
        return self._tokenizer.get_vocab(with_added_tokens=True)

    def _text_ids(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self._tokenizer.encode_batch(list(texts),
                                                            add_special_tokens=False)]

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]], list[bool]]:
        """(token ids, token type ids, truncated) per text."""
        ids, type_ids, truncated = [], [], []
        for text_ids in self._text_ids(texts):
            row, types = self._template.wrap(keep(text_ids, self.room, self.truncation))
            ids.append(row)
            type_ids.append(types)
            truncated.append(len(text_ids) > self.room)
        return ids, type_ids, truncated

    def pieces(self, text: str) -> tuple[list[int], list[int], list[tuple[int, int] | None]]:
        """One text as `encode` cuts it: (token ids, token type ids, each token's character
        span in `text`; None for the special tokens)."""
        found = self._tokenizer.encode(text, add_special_tokens=False)
        kept = keep(list(range(len(found.ids))), self.room, self.truncation)
        row, types = self._template.wrap([found.ids[i] for i in kept])
        spans = ([None] * len(self._template.prefix) + [found.offsets[i] for i in kept]
                 + [None] * len(self._template.suffix))
        return row, types, spans

    def windows(self, texts: Sequence[str], stride: int | None
                ) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
        """Every window of each text (neighbours share `stride` tokens; None: a quarter of
        max_length): (token ids, token type ids, index of the text each window belongs to)."""
        stride = resolve_stride(stride, self.max_length, self.room)
        ids, type_ids, owners = [], [], []
        for owner, text_ids in enumerate(self._text_ids(texts)):
            for start in window_starts(len(text_ids), self.room, stride):
                row, types = self._template.wrap(text_ids[start:start + self.room])
                ids.append(row)
                type_ids.append(types)
                owners.append(owner)
        return ids, type_ids, np.asarray(owners, dtype=np.int64)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts before truncation (special tokens included)."""
        return [len(ids) + self._template.size for ids in self._text_ids(texts)]
