"""Evaluation: score a trained run on any labelled split and write what was found.

Writes `metrics.json` (same key names as training's validation metrics), a confusion
matrix as JSON and PNG, and per-class results.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentitune import rundir
from sentitune.data import load_eval_split
from sentitune.errors import SentituneError
from sentitune.metrics import classification_metrics, multi_hot
from sentitune.plots import plot_confusion
from sentitune.predict import Classifier


@dataclass(frozen=True)
class EvalResult:
    output: Path
    metrics: dict


def evaluate(
    run_dir: str | Path,
    data: str | None = None,
    *,
    split: str | None = None,
    output: str | Path | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 64,
    classifier: Classifier | None = None,
) -> EvalResult:
    """Evaluate `run_dir` on `data` (default: the dataset it was trained on)."""
    run_dir = rundir.check_run_dir(Path(run_dir))
    config = rundir.read_json(run_dir / "metrics.json")  # fails early on a broken run
    settings = _run_settings(run_dir)
    data = data or settings["data"]["dataset"]
    task, labels = rundir.read_labels(run_dir)
    frame, split = load_eval_split(
        data, split, labels, task,
        text_column or (settings["data"]["text_column"] if data == settings["data"]["dataset"]
                        else None),
        label_column or (settings["data"]["label_column"] if data == settings["data"]["dataset"]
                         else None),
        strip_html=settings["data"].get("clean_html", True),
    )
    if frame.empty:
        raise SentituneError(f"{data} ({split}) has no rows to evaluate")
    classifier = classifier or Classifier.from_pretrained(run_dir)
    texts = list(frame["text"])
    probs = classifier.predict_proba(texts, batch_size=batch_size)
    thresholds = classifier.decision.label_thresholds
    y_true = (multi_hot(list(frame["label"]), len(labels)) if task == "multilabel"
              else np.asarray(frame["label"], dtype=int))
    found = classification_metrics(y_true, probs, task, labels,
                                   None if thresholds is None else np.asarray(thresholds))
    found |= {"data": data, "split": split, "method": config.get("method", "full")}

    name = f"eval-{Path(data).stem.replace('.', '-')}-{split}"
    out_dir = Path(output) if output else run_dir / name
    out_dir.mkdir(parents=True, exist_ok=True)
    if "confusion_matrix" in found:
        rundir.write_json(out_dir / "confusion_matrix.json",
                          {"labels": labels, "matrix": found["confusion_matrix"]})
        plot_confusion(found["confusion_matrix"], labels, out_dir / "confusion_matrix.png")
    rundir.write_json(out_dir / "metrics.json", found)
    return EvalResult(out_dir, found)


def _run_settings(run_dir: Path) -> dict:
    import yaml

    return yaml.safe_load((run_dir / "config.yaml").read_text())
