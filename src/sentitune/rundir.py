"""The run directory: the contract between training and every later stage.

    RUN_DIR/
      model/          save_pretrained: safetensors, config (label names), tokenizer
      adapter/        LoRA runs only: the peft adapter with the trained head
      config.yaml     resolved RunConfig + data fingerprint + library versions
      labels.json     {"task": ..., "labels": [...]}
      decision.json   how probabilities become decisions: review threshold, label thresholds
      history.csv     per epoch: train loss, validation loss, accuracy, F1
      metrics.json    validation metrics, best epoch, runtime, parameters, memory
      curves.png      loss and accuracy per epoch
      README.md       model card

A run is built in `RUN_DIR.partial/` and renamed into place only when complete, so a
failed run never leaves a directory that looks finished. Checkpoints for `--resume`
live in `RUN_DIR.partial/checkpoints/` until then.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from sentitune.errors import SentituneError

REQUIRED = ("labels.json", "config.yaml", "metrics.json")
DEFAULT_REVIEW_THRESHOLD = 0.8


@dataclass(frozen=True)
class Decision:
    """How a run turns probabilities into answers; saved as decision.json."""

    review_threshold: float = DEFAULT_REVIEW_THRESHOLD
    label_thresholds: list[float] | None = None  # multi-label: one per label
    temperature: float = 1.0  # fitted on validation, already folded into the saved head


def staging_dir(run_dir: Path) -> Path:
    return run_dir.with_name(run_dir.name + ".partial")


def prepare_staging(run_dir: Path, resume: bool) -> Path:
    staging = staging_dir(run_dir)
    if staging.exists() and not resume:
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    return staging


def publish(staging: Path, run_dir: Path) -> None:
    """Swap the finished staging directory into place."""
    shutil.rmtree(staging / "checkpoints", ignore_errors=True)
    if run_dir.exists():
        trash = run_dir.with_name(run_dir.name + ".old")
        shutil.rmtree(trash, ignore_errors=True)
        run_dir.rename(trash)
        staging.rename(run_dir)
        shutil.rmtree(trash)
    else:
        staging.rename(run_dir)


def write_json(path: Path, payload: Any) -> None:
    """Write JSON atomically: readers never see half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def check_run_dir(run_dir: Path) -> Path:
    run_dir = Path(run_dir)
    if run_dir.name.endswith(".partial"):
        raise SentituneError(
            f"{run_dir} is an unfinished run; resume it with `sentitune train --resume "
            f"--output {run_dir.with_name(run_dir.name.removesuffix('.partial'))}`"
        )
    if not run_dir.is_dir():
        raise SentituneError(f"{run_dir} is not a directory; give a run made by `sentitune train`")
    missing = [name for name in REQUIRED if not (run_dir / name).exists()]
    if missing or not ((run_dir / "model").is_dir() or (run_dir / "adapter").is_dir()):
        raise SentituneError(
            f"{run_dir} is not a sentitune run: missing {', '.join(missing) or 'model/'}; "
            "train one with `sentitune train`"
        )
    return run_dir


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text()) or {}


def read_labels(run_dir: Path) -> tuple[str, list[str]]:
    payload = read_json(run_dir / "labels.json")
    return payload["task"], payload["labels"]


def read_decision(run_dir: Path) -> Decision:
    path = run_dir / "decision.json"
    return Decision(**read_json(path)) if path.exists() else Decision()


def write_decision(run_dir: Path, decision: Decision) -> None:
    write_json(run_dir / "decision.json", asdict(decision))


def set_review_threshold(run_dir: Path, threshold: float) -> Decision:
    """Make `threshold` the run's default review threshold; the rest of decision.json stays."""
    decision = replace(read_decision(run_dir), review_threshold=float(threshold))
    write_decision(run_dir, decision)
    return decision


def versions() -> dict[str, str]:
    import platform

    import torch
    import transformers

    from sentitune import __version__

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),
        "transformers": str(transformers.__version__),
        "sentitune": __version__,
    }
