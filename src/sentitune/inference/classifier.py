"""Run directories become a `Classifier` that scores texts fast.

A Classifier has members: one `Member` for a plain run, several for an ensemble (the mean
of their calibrated probabilities, `sentitune.inference.ensemble`). Each member gives texts
its run's own preprocessing, tokenizes them once, sorts them by length and batches them so
each batch pads only to its own longest text (on CPU a batch also ends before padding
passes a quarter of its tokens). Which engine computes the logits is a backend
(`sentitune.inference.backends`), chosen by name. A text over max_length keeps the tokens
the run's `truncation` says, or with `long_text="chunk"` every window of it is scored and
the windows' logits are averaged (`sentitune.truncation`).

Logits become answers in one place, `Classifier.decide` (probabilities, the decision of
`sentitune.decision`, review), used by predict, evaluate and serve alike; results come
back in input order, in the prediction schema of `sentitune.schema`. How the classifier
answers is an `InferenceConfig`, resolved against the run's own settings once, on load.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentitune import schema
from sentitune.config import LONG_TEXT_MODES, InferenceConfig, inference_config
from sentitune.dataset.splits import is_blank
from sentitune.decision import (
    Decision,
    accept_cut,
    combined_decision,
    decide,
    label_cuts,
    overridden,
    review_confidence,
)
from sentitune.errors import SentituneError
from sentitune.inference.backends import Backend, load_backend
from sentitune.inference.encoding import TextEncoder
from sentitune.inference.ensemble import mean_probability_logits, open_runs
from sentitune.metrics import probabilities
from sentitune.run import Run
from sentitune.truncation import aggregate

RunDirs = str | Path | Run | Sequence[str | Path | Run]
# What `Classifier.predict` may change per call; the rest is fixed when the model loads.
PER_CALL = ("batch_size", "review_threshold", "threshold", "review_truncated")

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


class Member:
    """One run's model, ready to score: its preprocessing, tokenizer and backend."""

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
        self._lock = threading.Lock()  # one forward pass at a time per model

    @classmethod
    def load(cls, run: Run, config: InferenceConfig, device: str | None = None,
             num_threads: int | None = None) -> Member:
        if not config.backend.startswith("onnx"):
            from sentitune.model import quiet_transformers

            quiet_transformers()
        loaded = load_backend(run, config.backend, device, num_threads)
        tokenizer_dir = run.model_dir if run.model_dir.is_dir() else run.adapter_dir
        encoder = TextEncoder.from_dir(tokenizer_dir, run.max_length,
                                       run.config.data.truncation)
        return cls(run, loaded, encoder, config.long_text, config.stride)

    def scored(self, texts: Sequence[str], batch_size: int,
               max_batch_tokens: int | None = None
               ) -> tuple[np.ndarray, list[bool], np.ndarray]:
        """Logits, whether each text was truncated, and its windows (1 unless chunked)."""
        if self.long_text != "chunk":
            ids, type_ids, truncated = self.encoder.encode(self.run.preprocess(list(texts)))
            return (self._forward(ids, type_ids, batch_size, max_batch_tokens), truncated,
                    np.ones(len(ids), int))
        window_logits, owners = self.window_logits(texts, batch_size, max_batch_tokens)
        counts = np.bincount(owners, minlength=len(texts))
        return aggregate(window_logits, owners, len(texts)), [False] * len(texts), counts

    def window_logits(self, texts: Sequence[str], batch_size: int,
                      max_batch_tokens: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """The logits of every window of every text, and the index of each window's text."""
        ids, type_ids, owners = self.encoder.windows(self.run.preprocess(list(texts)),
                                                     self.stride)
        return self._forward(ids, type_ids, batch_size, max_batch_tokens), owners

    def _forward(self, ids: list[list[int]], type_ids: list[list[int]],
                 batch_size: int, max_batch_tokens: int | None = None) -> np.ndarray:
        out = np.zeros((len(ids), len(self.run.labels)), dtype=np.float32)
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


@dataclass(frozen=True)
class Answers:
    """What `Classifier.decide` makes of a batch of logits, row by row."""

    probs: np.ndarray  # calibrated: each run's temperature is folded into its saved head
    chosen: np.ndarray  # class ids, or 0/1 rows for multi-label
    confidence: np.ndarray  # the prediction's `score` (sentitune.schema)
    review: np.ndarray  # what review is judged on: `confidence`, or -inf where truncated
    needs_review: np.ndarray


class Classifier:
    """Trained runs answering as one: a plain run has one member, an ensemble several.

    The first member stands for the classifier wherever one run's settings are read (its
    data settings, text column, encoder for length statistics). `config` is how it answers;
    `decision` is the run's decision (an ensemble's: `combined_decision`) with the config's
    review settings and threshold in place, resolved here, once.
    """

    def __init__(self, members: Sequence[Member],
                 config: InferenceConfig | None = None) -> None:
        if not members:
            raise SentituneError("give at least one run directory")
        self.members = list(members)
        open_runs([m.run for m in self.members])  # refuses members that do not fit together
        self.config = config or InferenceConfig()
        self.run = self.members[0].run
        self.labels = self.run.labels
        self.task = self.run.task
        self.decision: Decision = self.decision_for(self.config)

    @classmethod
    def from_pretrained(cls, run_dirs: RunDirs, config: InferenceConfig | None = None, *,
                        device: str | None = None, num_threads: int | None = None,
                        **settings: Any) -> Classifier:
        """Load one run, or several as an ensemble, the way `config` and the flat
        `settings` (InferenceConfig fields: backend, long_text, review_threshold, ...) say;
        `num_threads` caps an ONNX session's threads."""
        config = inference_config(config, **settings)
        runs = open_runs(run_dirs)
        return cls([Member.load(run, config, device, num_threads) for run in runs], config)

    def decision_for(self, config: InferenceConfig) -> Decision:
        """The decision under `config`'s review settings and threshold (None: the run's)."""
        base = combined_decision([m.run.decision for m in self.members])
        return overridden(base, self.task, len(self.labels),
                          review_threshold=config.review_threshold,
                          threshold=config.threshold, review_truncated=config.review_truncated)

    # ------------------------------------------------------------- what it is

    @property
    def backend(self) -> Backend:
        return self.members[0].backend

    @property
    def encoder(self) -> TextEncoder:
        return self.members[0].encoder

    @property
    def max_length(self) -> int:
        return self.encoder.max_length

    @property
    def long_text(self) -> str:
        return self.members[0].long_text

    @property
    def stride(self) -> int | None:
        return self.members[0].stride

    @property
    def review_threshold(self) -> float:
        return self.decision.review_threshold

    @property
    def model(self):
        """The torch model (torch and adapter backends) of the first member."""
        return getattr(self.backend, "model", None)

    @property
    def name(self) -> str:
        """The run directory's name; an ensemble's members' names joined by '+'."""
        return "+".join(m.run.path.resolve().name for m in self.members)

    def info(self) -> dict:
        config = self.run.config
        found = {
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
        if len(self.members) == 1:
            return found
        return {**found, "model": " + ".join(m.run.config.model.model for m in self.members),
                "run_dir": [str(m.run.path) for m in self.members],
                "ensemble": len(self.members),
                "metrics": {}}  # the members' own are in their runs; none is the ensemble's

    # ------------------------------------------------------------- scoring

    def scored(self, texts: Sequence[str], batch_size: int | None = None,
               max_batch_tokens: int | None = None
               ) -> tuple[np.ndarray, list[bool], np.ndarray]:
        """Logits in input order, whether each text was truncated and how many windows it
        was scored in (1 unless chunked). An ensemble's logits are those whose softmax
        (multi-label: sigmoid) is the mean of its members' probabilities; a text counts as
        truncated when any member had to cut it."""
        batch_size = batch_size or self.config.batch_size
        if len(self.members) == 1:
            return self.members[0].scored(texts, batch_size, max_batch_tokens)
        logits, truncated, windows = [], np.zeros(len(texts), bool), np.ones(len(texts), int)
        for member in self.members:
            z, cut, counts = member.scored(texts, batch_size, max_batch_tokens)
            logits.append(z)
            truncated |= np.asarray(cut, dtype=bool)
            windows = np.maximum(windows, counts)
        return (mean_probability_logits(logits, self.task).astype(np.float32),
                truncated.tolist(), windows)

    def logits(self, texts: Sequence[str], batch_size: int | None = None,
               max_batch_tokens: int | None = None) -> tuple[np.ndarray, list[bool]]:
        """`scored` without the window counts."""
        logits, truncated, _ = self.scored(texts, batch_size, max_batch_tokens)
        return logits, truncated

    def window_logits(self, texts: Sequence[str], batch_size: int | None = None,
                      max_batch_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The logits of every window of every text, and the index of each window's text."""
        if len(self.members) > 1:
            raise SentituneError("an ensemble scores whole texts; its members' windows differ")
        return self.members[0].window_logits(texts, batch_size or self.config.batch_size,
                                             max_batch_tokens)

    def decide(self, logits: np.ndarray, truncated: Sequence[bool],
               decision: Decision | None = None) -> Answers:
        """Logits to answers under `decision` (default: this classifier's): the one path
        from logits to a label and `needs_review`, for predict, evaluate and serve."""
        decision = decision or self.decision
        probs = probabilities(np.asarray(logits, dtype=np.float64), self.task)
        cuts = (label_cuts(decision, len(self.labels)) if self.task == "multilabel"
                else None)
        chosen, confidence = decide(probs, self.task, cuts)
        review = review_confidence(confidence, truncated, decision.review_truncated)
        return Answers(probs, chosen, confidence, review,
                       review < accept_cut(decision.review_threshold, self.task))

    def predict_proba(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        logits, _ = self.logits(texts, batch_size)
        return probabilities(logits.astype(np.float64), self.task)

    def label_thresholds(self, threshold: float | None = None) -> np.ndarray:
        """Multi-label decision thresholds: this classifier's, or `threshold` for all."""
        if self.task != "multilabel":
            raise SentituneError(
                f"a decision threshold applies to multi-label runs; this run is {self.task} "
                "(its label is the most probable class); use --review-threshold instead")
        return np.asarray(overridden(self.decision, self.task, len(self.labels),
                                     threshold=threshold).label_thresholds
                          or [0.5] * len(self.labels), dtype=float)

    def predict(self, texts: Sequence[str] | str, *, max_batch_tokens: int | None = None,
                **settings: Any) -> list[dict]:
        """One record per text, in input order (fields: `sentitune.schema`); a text with
        nothing to score (`is_blank`: empty, whitespace or zero-width only) gets
        `schema.unscored`'s record.

        `settings` change this call's batch_size, review_threshold, threshold (multi-label)
        or review_truncated (None: as loaded); `max_batch_tokens` bounds the padded tokens
        of each forward pass.
        """
        if isinstance(texts, str):
            texts = [texts]
        fixed = sorted(set(settings) - set(PER_CALL))
        if fixed:
            raise SentituneError(f"{', '.join(fixed)} cannot change per call; give "
                                 "them to Classifier.from_pretrained")
        config = self.config.replace(**settings)
        decision = self.decision if config == self.config else self.decision_for(config)
        blank = [not isinstance(t, str) or is_blank(t) for t in texts]
        scorable = [t for t, b in zip(texts, blank, strict=True) if not b]
        logits, truncated, windows = self.scored(scorable, config.batch_size, max_batch_tokens)
        answers = self.decide(logits, truncated, decision)
        scored = iter(schema.prediction(text, self.labels, p, chosen=c, score=s, needs_review=r,
                                        truncated=t, windows=w)
                      for text, p, c, s, r, t, w in zip(
                          scorable, answers.probs, answers.chosen, answers.confidence,
                          answers.needs_review, truncated, windows, strict=True))
        return [schema.unscored(text, self.labels, self.task, "empty text") if b
                else next(scored) for text, b in zip(texts, blank, strict=True)]


# The older name of `Classifier.from_pretrained`, for one run or several.
load_classifier = Classifier.from_pretrained
