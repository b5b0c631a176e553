"""Texts to token ids with the run's own tokenizer, through `tokenizers` alone.

transformers' tokenizer classes import torch; the ONNX backends must not, so every
backend encodes with the `tokenizer.json` that `save_pretrained` writes into model/ (the
same Rust tokenizer transformers itself runs, normaliser and special tokens included).
Which tokens a long text keeps, or its windows, follow `sentitune.truncation`, as in training.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentitune.errors import SentituneError
from sentitune.truncation import Truncator


class TextEncoder:
    """Tokenizes to at most `max_length` tokens (keeping the tokens `truncation` says) and
    pads batches to their longest row."""

    def __init__(self, tokenizer, pad_id: int, max_length: int,
                 truncation: str = "head") -> None:
        self._truncator = Truncator(tokenizer, max_length, truncation)
        self.pad_id = pad_id
        self.max_length = max_length
        self.truncation = truncation

    @classmethod
    def from_dir(cls, folder: Path, max_length: int, truncation: str = "head") -> TextEncoder:
        from tokenizers import Tokenizer

        path = Path(folder) / "tokenizer.json"
        if not path.is_file():
            raise SentituneError(f"{path} is missing; the run's tokenizer must be saved with it "
                                 "(retrain, or save the tokenizer with save_pretrained)")
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # the Rust library raises a bare Exception
            raise SentituneError(f"{path} is damaged ({exc}); restore it or retrain") from None
        return cls(tokenizer, _pad_id(tokenizer, Path(folder)), max_length, truncation)

    def vocabulary(self) -> dict[str, int]:
        """Token -> id, added tokens included (two encoders agree when these agree)."""
        return self._truncator.vocabulary()

    def encode(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]], list[bool]]:
        """(token ids, token type ids, truncated) per text."""
        return self._truncator.encode(texts)

    def pieces(self, text: str) -> tuple[list[int], list[int], list[tuple[int, int] | None]]:
        """(token ids, token type ids, character span of each token, None for special
        tokens) of one text, cut as `encode` cuts it."""
        return self._truncator.pieces(text)

    def windows(self, texts: Sequence[str], stride: int | None
                ) -> tuple[list[list[int]], list[list[int]], np.ndarray]:
        """Every window of each text: (token ids, token type ids, owning text's index)."""
        return self._truncator.windows(texts, stride)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Token counts before truncation (special tokens included)."""
        return self._truncator.token_lengths(texts)

    def pad(self, ids: Sequence[list[int]], type_ids: Sequence[list[int]]) -> dict[str, np.ndarray]:
        """A right-padded batch: input_ids, attention_mask, token_type_ids (int64)."""
        width = max(len(row) for row in ids)
        batch = {name: np.zeros((len(ids), width), dtype=np.int64)
                 for name in ("input_ids", "attention_mask", "token_type_ids")}
        batch["input_ids"].fill(self.pad_id)
        for i, (row, types) in enumerate(zip(ids, type_ids, strict=True)):
            batch["input_ids"][i, :len(row)] = row
            batch["attention_mask"][i, :len(row)] = 1
            batch["token_type_ids"][i, :len(row)] = types
        return batch


def _pad_id(tokenizer, folder: Path) -> int:
    """The pad token's id, from the tokenizer's saved config (0 when it names none)."""
    config = folder / "tokenizer_config.json"
    token = None
    if config.is_file():
        token = json.loads(config.read_text(encoding="utf-8")).get("pad_token")
        if isinstance(token, dict):  # older files store AddedToken objects
            token = token.get("content")
    found = tokenizer.token_to_id(token) if token else None
    return int(found) if found is not None else 0
