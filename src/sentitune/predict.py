"""Inference: a run directory becomes a `Classifier` that scores texts fast.

Texts are tokenized once, sorted by length and batched so each batch pads only to its
own longest text (on CPU a batch also ends before padding passes a quarter of its tokens);
results come back in input order. Each result carries the label,
its probability, all probabilities and `needs_review` (top probability below the
run's review threshold, or for multi-label any label close to its threshold).
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from sentitune import rundir
from sentitune.errors import SentituneError
from sentitune.metrics import probabilities
from sentitune.model import quiet_transformers

BACKENDS = ("torch", "onnx", "onnx-int8")
# On CPU a batch costs about its padded token count, so a batch closes before its padding
# would pass this share of its real tokens. On MiniLM it made a server micro-batch of 32 mixed
# requests 1.9x cheaper per text and left long-text throughput as it was. A GPU pays per call
# rather than per token, so there batches fill up to batch_size.
CPU_MAX_PADDING = 0.25


def length_batches(lengths: Sequence[int], batch_size: int,
                   max_padding: float | None = None) -> Iterator[np.ndarray]:
    """Indices of `lengths` in batches of ascending length, at most `batch_size` each.

    With `max_padding`, a batch also closes before its padded size (longest x count) would
    exceed (1 + max_padding) times its real token count.
    """
    order = np.argsort(lengths, kind="stable")
    batch: list[int] = []
    real = 0
    for index in order:
        length = lengths[index]  # the longest so far: the order is ascending
        if batch and (len(batch) == batch_size or (
                max_padding is not None
                and length * (len(batch) + 1) > (1 + max_padding) * (real + length))):
            yield np.array(batch)
            batch, real = [], 0
        batch.append(int(index))
        real += length
    if batch:
        yield np.array(batch)


def accept_cut(review_threshold: float, task: str) -> float:
    """The confidence an answer needs to skip review: the top probability for single-label
    tasks; for multi-label ones every label's distance from its decision threshold."""
    return (1 - review_threshold) / 2 if task == "multilabel" else review_threshold


class Classifier:
    """A trained sentiment classifier loaded from a run directory."""

    def __init__(self, model, tokenizer, *, labels: list[str], task: str,
                 decision: rundir.Decision, max_length: int, info: dict,
                 onnx_backend=None):
        self.model = model
        self.tokenizer = tokenizer
        self.labels = labels
        self.task = task
        self.decision = decision
        self.review_threshold = decision.review_threshold
        self.max_length = max_length
        self._info = info
        self._onnx = onnx_backend
        self._lock = threading.Lock()  # one forward pass at a time per model

    # ------------------------------------------------------------- loading

    @classmethod
    def from_pretrained(cls, run_dir: str | Path, *, device: str | None = None,
                        backend: str = "torch") -> Classifier:
        """Load a run directory (model/ or, for unmerged LoRA runs, adapter/)."""
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        quiet_transformers()
        run_dir = rundir.check_run_dir(Path(run_dir))
        if backend not in BACKENDS:
            raise SentituneError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend}")
        task, labels = rundir.read_labels(run_dir)
        run_metrics = rundir.read_json(run_dir / "metrics.json")
        settings = rundir.read_yaml(run_dir / "config.yaml")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model_dir = run_dir / "model"
        source = model_dir if model_dir.is_dir() else run_dir / "adapter"
        tokenizer = AutoTokenizer.from_pretrained(source)
        model = onnx_backend = None
        if backend.startswith("onnx"):
            from sentitune.export import OnnxBackend, onnx_path

            # The exported graph replaces the torch model entirely: less memory, faster start.
            onnx_backend = OnnxBackend(onnx_path(run_dir, int8=backend == "onnx-int8"))
        elif model_dir.is_dir():
            # safetensors only: a run directory never unpickles code.
            model = AutoModelForSequenceClassification.from_pretrained(
                model_dir, use_safetensors=True).eval().to(device)
        else:
            from peft import PeftConfig, PeftModel

            from sentitune.model import load_model

            # Rebuild the base with this run's labels (and head size) before attaching the
            # adapter; peft's auto class would rebuild a default two-label head.
            base = load_model(PeftConfig.from_pretrained(source).base_model_name_or_path,
                              labels, task)
            model = PeftModel.from_pretrained(base, source).eval().to(device)
        max_length = int(settings.get("data", {}).get("max_length", tokenizer.model_max_length))
        info = {
            "model": settings.get("model", {}).get("model"),
            "run_dir": str(run_dir),
            "labels": labels,
            "task": task,
            "method": run_metrics.get("method", "full"),
            "metrics": run_metrics.get("validation", {}),
            "max_length": max_length,
            "backend": backend,
        }
        return cls(model, tokenizer, labels=labels, task=task,
                   decision=rundir.read_decision(run_dir), max_length=max_length, info=info,
                   onnx_backend=onnx_backend)

    def info(self) -> dict:
        return self._info | {"review_threshold": self.review_threshold}

    # ------------------------------------------------------------- scoring

    def _encode(self, texts: Sequence[str]) -> tuple[list[dict], list[bool]]:
        """Token ids per text (truncated to max_length) and whether each was truncated."""
        encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length + 1)
        rows, truncated = [], []
        for i in range(len(texts)):
            row = {key: values[i] for key, values in encoded.items()}
            cut = len(row["input_ids"]) > self.max_length
            if cut:  # re-tokenize at the limit so the special tokens stay in place
                single = self.tokenizer(texts[i], truncation=True, max_length=self.max_length)
                row = dict(single)
            rows.append(row)
            truncated.append(cut)
        return rows, truncated

    def logits(self, texts: Sequence[str], batch_size: int = 64) -> tuple[np.ndarray, list[bool]]:
        """Raw logits in input order, computed in length-sorted batches (see length_batches)."""
        import torch

        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        rows, truncated = self._encode(texts)
        on_cpu = self._onnx is not None or self.model.device.type == "cpu"
        batches = length_batches([len(r["input_ids"]) for r in rows], batch_size,
                                 CPU_MAX_PADDING if on_cpu else None)
        out = np.zeros((len(rows), len(self.labels)), dtype=np.float32)
        with self._lock, torch.inference_mode():
            for picked in batches:
                batch = self.tokenizer.pad([rows[i] for i in picked], return_tensors="np")
                if self._onnx is not None:
                    out[picked] = self._onnx.logits(batch)
                else:
                    inputs = {k: torch.from_numpy(v).to(self.model.device)
                              for k, v in batch.items()}
                    out[picked] = self.model(**inputs).logits.float().cpu().numpy()
        return out, truncated

    def predict_proba(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        logits, _ = self.logits(texts, batch_size)
        return probabilities(logits.astype(np.float64), self.task)

    def label_thresholds(self, threshold: float | None = None) -> np.ndarray:
        """Multi-label decision thresholds: the run's tuned ones, or `threshold` for all."""
        if self.task != "multilabel":
            raise SentituneError(
                f"a decision threshold applies to multi-label runs; this run is {self.task} "
                "(its label is the most probable class); use --review-threshold instead"
            )
        if threshold is not None:
            if not 0 < threshold < 1:
                raise SentituneError(f"--threshold must be between 0 and 1, got {threshold}")
            return np.full(len(self.labels), float(threshold))
        return np.asarray(self.decision.label_thresholds or [0.5] * len(self.labels))

    def predict(self, texts: Sequence[str], *, batch_size: int = 64,
                review_threshold: float | None = None,
                threshold: float | None = None) -> list[dict]:
        """One result per text, in input order.

        `threshold` (multi-label only) replaces every label's tuned decision threshold.
        """
        if isinstance(texts, str):
            texts = [texts]
        cuts = (self.label_thresholds(threshold)
                if self.task == "multilabel" or threshold is not None else None)
        logits, truncated = self.logits(texts, batch_size)
        probs = probabilities(logits.astype(np.float64), self.task)
        review = self.review_threshold if review_threshold is None else review_threshold
        return [self._result(text, p, cut, review, cuts)
                for text, p, cut in zip(texts, probs, truncated, strict=True)]

    def _result(self, text: str, probs: np.ndarray, truncated: bool, threshold: float,
                cuts: np.ndarray | None) -> dict:
        named = {label: round(float(p), 6) for label, p in zip(self.labels, probs, strict=True)}
        if cuts is not None:
            chosen = [label for label, p, c in zip(self.labels, probs, cuts, strict=True)
                      if p >= c]
            margin = float(np.min(np.abs(probs - cuts)))
            return {"text": text, "labels": chosen, "probabilities": named,
                    "needs_review": margin < accept_cut(threshold, "multilabel"),
                    "truncated": truncated}
        top = int(np.argmax(probs))
        return {"text": text, "label": self.labels[top], "score": float(probs[top]),
                "probabilities": named,
                "needs_review": bool(probs[top] < accept_cut(threshold, self.task)),
                "truncated": truncated}


# ----------------------------------------------------------------- files


def iter_texts(path: Path, text_column: str | None, chunk_size: int) -> Iterator[list[str]]:
    """Stream texts from CSV/TSV/JSONL/TXT in chunks, never the whole file at once."""
    import pandas as pd

    from sentitune.data import TEXT_COLUMNS

    if not path.is_file():
        raise SentituneError(f"file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".txt":
            with path.open(encoding="utf-8") as handle:
                yield from _chunks((line.rstrip("\n") for line in handle), chunk_size)
            return
        if suffix in (".csv", ".tsv"):
            reader = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",",
                                 chunksize=chunk_size, keep_default_na=False, dtype=str,
                                 quoting=3 if suffix == ".tsv" else 0)
        elif suffix == ".jsonl":
            reader = pd.read_json(path, lines=True, chunksize=chunk_size, dtype=False)
        else:
            raise SentituneError(f"unsupported input '{path.name}'; use .csv, .tsv, .jsonl or .txt")
        for frame in reader:
            column = text_column or next(
                (c for c in frame.columns if str(c).lower() in TEXT_COLUMNS), None)
            if column not in frame.columns:
                raise SentituneError(
                    f"{path} has no text column{f' {text_column!r}' if text_column else ''}; "
                    f"columns found: {', '.join(map(str, frame.columns))}; use --text-column")
            yield [str(t) for t in frame[column].fillna("")]
    except (UnicodeDecodeError, ValueError, pd.errors.ParserError) as exc:
        raise SentituneError(
            f"could not read {path}: it looks binary or malformed ({exc.__class__.__name__})"
        ) from None


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def predict_file(classifier: Classifier, source: Path, target: Path, *,
                 text_column: str | None = None, batch_size: int = 64,
                 review_threshold: float | None = None, threshold: float | None = None,
                 chunk_size: int = 2048, progress: bool = True) -> dict:
    """Score every text of `source` into `target` (.jsonl or .csv), written atomically."""
    from tqdm.auto import tqdm

    if target.suffix.lower() not in (".jsonl", ".csv"):
        raise SentituneError(f"--output must end in .jsonl or .csv, not '{target.name}'")
    if threshold is not None:
        classifier.label_thresholds(threshold)  # a wrong --threshold fails before any reading
    counts = {"texts": 0, "needs_review": 0, "empty": 0}
    # delay: a bar appears only for work that takes a while, never before an early error.
    bar = tqdm(unit="texts", desc="predict", disable=not progress, delay=1.0)
    with rundir.atomic_path(target) as tmp, tmp.open("w", newline="", encoding="utf-8") as out:
        writer = None
        for chunk in iter_texts(source, text_column, chunk_size):
            kept = [t for t in chunk if t.strip()]
            counts["empty"] += len(chunk) - len(kept)
            results = classifier.predict(kept, batch_size=batch_size,
                                         review_threshold=review_threshold, threshold=threshold)
            for result in results:
                counts["needs_review"] += result["needs_review"]
                if target.suffix.lower() == ".jsonl":
                    out.write(json.dumps(result, ensure_ascii=False) + "\n")
                    continue
                row = _flat(result)
                if writer is None:
                    writer = csv.DictWriter(out, fieldnames=list(row))
                    writer.writeheader()
                writer.writerow(row)
            counts["texts"] += len(results)
            bar.update(len(chunk))
    bar.close()
    return counts


def _flat(result: dict) -> dict:
    row = {k: v for k, v in result.items() if k != "probabilities"}
    if "labels" in row:
        row["labels"] = "|".join(row["labels"])
    row.update({f"p_{label}": p for label, p in result["probabilities"].items()})
    return row
