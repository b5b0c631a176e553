"""A run directory becomes a `Classifier` that scores texts fast.

Texts get the run's own preprocessing, are tokenized once, sorted by length and batched so
each batch pads only to its own longest text (on CPU a batch also ends before padding
passes a quarter of its tokens); results come back in input order, in the prediction
schema of `sentitune.schema`. Which engine computes the logits is a backend
(`sentitune.inference.backends`), chosen by name. A text over max_length keeps the tokens
the run's `truncation` says, or with `long_text="chunk"` every window of it is scored and
the windows' logits are averaged (`sentitune.truncation`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from sentitune import schema
from sentitune.decision import Decision, accept_cut, decide, label_cuts, review_confidence
from sentitune.errors import SentituneError
from sentitune.inference.backends import Backend, load_backend
from sentitune.inference.encoding import TextEncoder
from sentitune.metrics import probabilities
from sentitune.run import Run
from sentitune.truncation import LONG_TEXT_MODES, aggregate

# On CPU a batch costs about its padded token count, so a batch closes before its padding
# would pass this share of its real tokens. On MiniLM it made a server micro-batch of 32 mixed
# requests 1.9x cheaper per text and left long-text throughput as it was. A GPU pays per call
# rather than per token, so there batches fill up to batch_size.
CPU_MAX_PADDING = 0.25


def length_batches(lengths: Sequence[int], batch_size: int,
                   max_padding: float | None = None,
                   max_tokens: int | None = None) -> Iterator[np.ndarray]:
    """Indices of `lengths` in batches of ascending length, at most `batch_size` each.

    With `max_padding`, a batch also closes before its padded size (longest x count) would
    exceed (1 + max_padding) times its real token count; with `max_tokens`, before its
    padded size would exceed `max_tokens` (a longer text still goes, alone).
    """
    order = np.argsort(lengths, kind="stable")
    batch: list[int] = []
    real = 0
    for index in order:
        length = lengths[index]  # the longest so far: the order is ascending
        padded = length * (len(batch) + 1)
        if batch and (len(batch) == batch_size
                      or (max_padding is not None and padded > (1 + max_padding) * (real + length))
                      or (max_tokens is not None and padded > max_tokens)):
            yield np.array(batch)
            batch, real = [], 0
        batch.append(int(index))
        real += length
    if batch:
        yield np.array(batch)


class Classifier:
    """A trained sentiment classifier loaded from a run directory."""

    def __init__(self, run: Run, backend: Backend, encoder: TextEncoder,
                 long_text: str | None = None, stride: int | None = None) -> None:
        data = run.config.data
        self.long_text = long_text or data.long_text
        if self.long_text not in LONG_TEXT_MODES:
            raise SentituneError(f"--long-text must be one of {', '.join(LONG_TEXT_MODES)}, "
                                 f"not '{self.long_text}'")
        self.stride = data.stride if stride is None else stride
        if self.long_text == "chunk":
            encoder.windows([], self.stride)  # a stride that does not fit fails here
        self.run = run
        self.backend = backend
        self.encoder = encoder
        self.labels = run.labels
        self.task = run.task
        self.decision: Decision = run.decision
        self.max_length = encoder.max_length
        self._lock = threading.Lock()  # one forward pass at a time per model

    @classmethod
    def from_pretrained(cls, run_dir: str | Path | Run, *, backend: str = "torch",
                        device: str | None = None, num_threads: int | None = None,
                        long_text: str | None = None, stride: int | None = None
                        ) -> Classifier:
        """Load a run with the named backend (see `sentitune.inference.backends`);
        `long_text` and `stride` replace the run's own long-text settings."""
        run = run_dir if isinstance(run_dir, Run) else Run.open(run_dir)
        if not backend.startswith("onnx"):
            from sentitune.model import quiet_transformers

            quiet_transformers()
        loaded = load_backend(run, backend, device, num_threads)
        tokenizer_dir = run.model_dir if run.model_dir.is_dir() else run.adapter_dir
        encoder = TextEncoder.from_dir(tokenizer_dir, run.max_length,
                                       run.config.data.truncation)
        return cls(run, loaded, encoder, long_text, stride)

    @property
    def review_threshold(self) -> float:
        return self.decision.review_threshold

    @property
    def model(self):
        """The torch model (torch and adapter backends)."""
        return getattr(self.backend, "model", None)

    def info(self) -> dict:
        config = self.run.config
        return {
            "model": config.model.model,
            "run_dir": str(self.run.path),
            "labels": self.labels,
            "task": self.task,
            "method": config.training.method,
            "metrics": self.run.metrics.get("validation", {}),
            "max_length": self.max_length,
            "truncation": self.encoder.truncation,
            "long_text": self.long_text,
            "stride": self.stride,
            "backend": self.backend.name,
            "review_threshold": self.review_threshold,
        }

    # ------------------------------------------------------------- scoring

    def logits(self, texts: Sequence[str], batch_size: int = 64,
               max_batch_tokens: int | None = None) -> tuple[np.ndarray, list[bool]]:
        """Raw logits in input order, and whether each text was truncated, computed in
        length-sorted batches (see length_batches) after the run's preprocessing; with
        long_text chunk, the mean of each text's windows' logits (nothing is truncated)."""
        logits, truncated, _ = self.scored(texts, batch_size, max_batch_tokens)
        return logits, truncated

    def scored(self, texts: Sequence[str], batch_size: int = 64,
               max_batch_tokens: int | None = None
               ) -> tuple[np.ndarray, list[bool], np.ndarray]:
        """`logits` plus the number of windows each text was scored in (1 unless chunked)."""
        if self.long_text != "chunk":
            ids, type_ids, truncated = self.encoder.encode(self.run.preprocess(list(texts)))
            return (self._forward(ids, type_ids, batch_size, max_batch_tokens), truncated,
                    np.ones(len(ids), int))
        window_logits, owners = self.window_logits(texts, batch_size, max_batch_tokens)
        counts = np.bincount(owners, minlength=len(texts))
        return aggregate(window_logits, owners, len(texts)), [False] * len(texts), counts

    def window_logits(self, texts: Sequence[str], batch_size: int = 64,
                      max_batch_tokens: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The logits of every window of every text, and the index of each window's text."""
        ids, type_ids, owners = self.encoder.windows(self.run.preprocess(list(texts)),
                                                     self.stride)
        return self._forward(ids, type_ids, batch_size, max_batch_tokens), owners

    def _forward(self, ids: list[list[int]], type_ids: list[list[int]],
                 batch_size: int, max_batch_tokens: int | None = None) -> np.ndarray:
        out = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        if not ids:
            return out
        batches = length_batches([len(row) for row in ids], batch_size,
                                 CPU_MAX_PADDING if self.backend.on_cpu else None,
                                 max_batch_tokens)
        with self._lock:
            for picked in batches:
                batch = self.encoder.pad([ids[i] for i in picked], [type_ids[i] for i in picked])
                out[picked] = self.backend.logits(batch)
        return out

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        logits, _ = self.logits(texts, batch_size)
        return probabilities(logits.astype(np.float64), self.task)

    def label_thresholds(self, threshold: float | None = None) -> np.ndarray:
        """Multi-label decision thresholds: the run's tuned ones, or `threshold` for all."""
        if self.task != "multilabel":
            raise SentituneError(
                f"a decision threshold applies to multi-label runs; this run is {self.task} "
                "(its label is the most probable class); use --review-threshold instead")
        return label_cuts(self.decision, len(self.labels), threshold)

    def predict(self, texts: Sequence[str] | str, *, batch_size: int = 64,
                review_threshold: float | None = None,
                threshold: float | None = None,
                review_truncated: bool | None = None,
                max_batch_tokens: int | None = None) -> list[dict]:
        """One prediction per text, in input order (fields: `sentitune.schema`).

        `threshold` (multi-label only) replaces every label's tuned decision threshold;
        `review_threshold` and `review_truncated` replace the run's review decision;
        `max_batch_tokens` bounds the padded tokens of each forward pass.
        """
        if isinstance(texts, str):
            texts = [texts]
        cuts = (self.label_thresholds(threshold)
                if self.task == "multilabel" or threshold is not None else None)
        review = self.review_threshold if review_threshold is None else review_threshold
        if not 0 <= review <= 1:
            raise SentituneError(f"--review-threshold must be between 0 and 1, got {review}")
        logits, truncated, windows = self.scored(texts, batch_size, max_batch_tokens)
        probs = probabilities(logits.astype(np.float64), self.task)
        chosen, confidence = decide(probs, self.task, cuts)
        if review_truncated is None:
            review_truncated = self.decision.review_truncated
        review_flags = (review_confidence(confidence, truncated, review_truncated)
                        < accept_cut(review, self.task))
        return [schema.prediction(text, self.labels, p, chosen=c, score=s, needs_review=r,
                                  truncated=t, windows=w)
                for text, p, c, s, r, t, w in zip(texts, probs, chosen, confidence,
                                                  review_flags, truncated, windows, strict=True)]
