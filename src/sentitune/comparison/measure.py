"""Measuring a comparison: what training does not (checkpoint size, inference speed with
torch and, where exported, ONNX), summarised per model and method over the seeds."""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sentitune.comparison.verify import METHOD_SETTINGS, ComparedRun
from sentitune.metrics import learning_problem
from sentitune.run import INT8_NAME, ONNX_NAME

LATENCY_TEXTS = 64
LATENCY_BATCH_SIZES = (1, 32)
LATENCY_REPEATS = 3
ONNX_BACKENDS = ("onnx", "onnx-int8")  # timed besides torch for runs exported to them

def _stats(values: Sequence[float]) -> dict:
    array = np.asarray(values, dtype=float)
    std = float(array.std(ddof=1)) if len(array) > 1 else 0.0  # spread across seeds
    return {"mean": round(float(array.mean()), 6), "std": round(std, 6), "n": len(array),
            "values": [round(float(v), 6) for v in array]}


def _weights_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) / 2**20


def backends_of(run: ComparedRun) -> list[str]:
    """torch, and the ONNX models the run was exported to."""
    exported = {"onnx": ONNX_NAME, "onnx-int8": INT8_NAME}
    return ["torch", *(name for name in ONNX_BACKENDS
                       if (run.run.onnx_dir / exported[name]).is_file())]


def measure_latency(runs: Sequence[ComparedRun], texts: Sequence[str]
                    ) -> dict[tuple[Path, str], dict[int, float]]:
    """Milliseconds per text (tokenizing included) of each run's model and backend (torch and
    any exported ONNX), per batch size.

    The runs of one seed are loaded together and timed in turns, pass after pass, and
    each keeps its best pass: other work on a shared machine only ever adds time, and
    taking turns spreads what it adds over the models and methods alike.
    """
    from sentitune.inference.classifier import Classifier

    found: dict[tuple[Path, str], dict[int, float]] = {}
    for seed in sorted({run.seed for run in runs}):
        models = {(run.path, backend): Classifier.from_pretrained(run.path, backend=backend)
                  for run in runs if run.seed == seed for backend in backends_of(run)}
        for size in LATENCY_BATCH_SIZES:
            for classifier in models.values():
                classifier.logits(texts, size)  # warm-up: first calls allocate and plan
            best = dict.fromkeys(models, math.inf)
            for _ in range(LATENCY_REPEATS):
                for key, classifier in models.items():
                    started = time.perf_counter()
                    classifier.logits(texts, size)
                    best[key] = min(best[key], time.perf_counter() - started)
            for key, seconds in best.items():
                found.setdefault(key, {})[size] = 1000 * seconds / len(texts)
    return found


def latency_texts(run: ComparedRun) -> list[str]:
    return list(run.run.rebuilt_splits().validation["text"][:LATENCY_TEXTS])


def summarise(group: list[ComparedRun], latency: dict[tuple[Path, str], dict[int, float]],
               output: Path) -> dict:
    method, first = group[0].method, group[0]
    trainable, total = first.metrics["trainable_params"], first.metrics["total_params"]
    checkpoint = "adapter" if method == "lora" else "model"
    merged = (first.path / "model").is_dir()
    largest = max(LATENCY_BATCH_SIZES)
    # A backend is reported for a variant only when every one of its runs was exported to it.
    backends = [b for b in backends_of(first) if all((run.path, b) in latency for run in group)]
    return {
        "model": first.model,
        "model_type": first.run.model_type,
        "method": method,
        "settings": {key: first.settings.get(key) for key in METHOD_SETTINGS[method]},
        "seeds": [run.seed for run in group],
        "runs": [_shown_path(run.path, output) for run in group],
        "trainable_params": trainable,
        "total_params": total,
        "trainable_pct": round(100 * trainable / total, 4),
        "peak_memory_mb": _stats([run.metrics["peak_memory_mb"] for run in group]),
        "train_runtime_s": _stats([run.metrics["train_runtime_s"] for run in group]),
        "train_samples_per_s": _stats([run.metrics["train_samples_per_s"] for run in group]),
        "val_accuracy": _stats([run.metrics["validation"]["accuracy"] for run in group]),
        # The runs' own selection metric (f1_macro by default), not the positive class's F1.
        "val_metric": (metric := first.metrics["selection_metric"]),
        "val_score": _stats([run.metrics["validation"][metric] for run in group]),
        # Seeds whose model learned nothing from the texts (metrics.learning_problem).
        "not_learned": [problem for run in group if (problem := learning_problem(
            run.metrics["validation"], run.run.task, run.run.labels)) is not None],
        "best_epoch": [run.metrics["best_epoch"] for run in group],
        "checkpoint": f"{checkpoint}/",
        "checkpoint_mb": round(_weights_mb(first.path / checkpoint), 3),
        "merged_model_mb": round(_weights_mb(first.path / "model"), 3) if merged else None,
        "latency_model": "model/ (merged)" if merged else "adapter/ (not merged)",
        "latency_ms_per_text": {f"batch_{size}": _stats([latency[run.path, "torch"][size]
                                                         for run in group])
                                for size in LATENCY_BATCH_SIZES},
        f"inference_texts_per_s_batch_{largest}": {
            backend: _stats([1000 / latency[run.path, backend][largest] for run in group])
            for backend in backends},
    }


def _shown_path(path: Path, output: Path) -> str:
    try:
        return str(path.resolve().relative_to(output.resolve()))
    except ValueError:
        return str(path.resolve())


def machine() -> dict:
    import torch

    return {
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        # Load from other work on the machine at report time (1, 5, 15 minutes): a loaded
        # machine slows every run, which is why runs are compared only with each other.
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }
