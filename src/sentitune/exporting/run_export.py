"""`sentitune export`: a run's model as verified ONNX (fp32, and int8 when asked).

The fp32 graph must reproduce torch's logits (within FP32_ATOL) or the export fails. The
int8 graph is judged where it matters: label agreement with torch on the run's own
validation texts, which are kept out of the int8 calibration texts; under
INT8_MIN_AGREEMENT a warning says to serve fp32 instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentitune import files
from sentitune.console import option, say, warn
from sentitune.errors import SentituneError
from sentitune.exporting.int8 import CALIBRATION_TEXTS, quantize_int8
from sentitune.exporting.onnx import (
    FP32_ATOL,
    SAMPLE_TEXTS,
    encode,
    export_fp32,
    input_names_of,
    load_for_export,
    torch_logits,
    verification_batches,
)
from sentitune.inference.backends import OnnxBackend, import_onnxruntime
from sentitune.metrics import agreement, probabilities
from sentitune.run import INT8_NAME, ONNX_NAME, QUANTIZE_CHOICES, Run

# The share of torch's labels below which the int8 model is, in effect, a different
# classifier (the goal the int8 export is built and benchmarked for).
INT8_MIN_AGREEMENT = 0.99
AGREEMENT_TEXTS = 1000


@dataclass(frozen=True)
class ExportResult:
    output: Path  # RUN_DIR/onnx
    report: dict  # paths, verification, agreement per backend on `agreement_texts`


def _check_out_dir(out_dir: Path) -> None:
    # An earlier export is replaced; anything else in the way is the user's and stays.
    if out_dir.exists() and not (
        out_dir.is_dir() and ((out_dir / ONNX_NAME).is_file() or not any(out_dir.iterdir()))
    ):
        raise SentituneError(
            f"{out_dir} exists and does not hold an earlier export; choose an empty or new folder"
        )


def export_onnx(
    model_dir: Path,
    out_dir: Path,
    *,
    quantize: str | None = None,
    opset: int = 17,
    calibration_texts: Sequence[str] | None = None,
    max_length: int | None = None,
    truncation: str = "head",
    progress: bool = False,
) -> dict[str, Any]:
    """Export `model_dir` to `out_dir/model.onnx` (and `model.int8.onnx`), verified against torch.

    `calibration_texts` (int8 only) are the texts whose activation ranges set the int8
    smoothing scales: a sample of the data the model will see; built-in sentences without.
    They are cut to `max_length` tokens as `truncation` says (the run's settings).

    Everything is written to a hidden folder beside `out_dir` and renamed into place at the
    end, so an interrupted or failed export never leaves an `out_dir` that looks complete.
    """
    import_onnxruntime()
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise SentituneError(f"unknown quantization {quantize!r}; use one of {QUANTIZE_CHOICES}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    _check_out_dir(out_dir)
    model, tokenizer = load_for_export(model_dir)
    input_names = input_names_of(model, tokenizer)
    multi_label = model.config.problem_type == "multi_label_classification"

    with files.atomic_dir(out_dir) as tmp:
        say(progress, f"exporting {out_dir / ONNX_NAME} (fp32) and checking it against torch ...")
        example = encode(tokenizer, SAMPLE_TEXTS[1:3], input_names)
        export_fp32(model, example, tmp / ONNX_NAME, opset)
        batches = verification_batches(tokenizer, input_names)
        reference = [torch_logits(model, batch) for batch in batches]
        fp32 = OnnxBackend(tmp / ONNX_NAME)
        max_abs_diff = max(
            float(np.abs(fp32.logits(batch) - ref).max())
            for batch, ref in zip(batches, reference, strict=True)
        )
        if not max_abs_diff <= FP32_ATOL:  # also catches NaN
            raise SentituneError(
                f"the ONNX export of {model_dir} disagrees with torch (max logit difference "
                f"{max_abs_diff:.2g} > {FP32_ATOL}); try another opset or report the model type"
            )
        result: dict[str, Any] = {
            "onnx_path": str(out_dir / ONNX_NAME),
            "input_names": input_names,
            "num_labels": model.config.num_labels,
            "multi_label": multi_label,
            "opset": opset,
            "max_abs_diff": max_abs_diff,
        }
        if quantize == "int8":
            texts = list(calibration_texts or SAMPLE_TEXTS)[:CALIBRATION_TEXTS]
            say(progress, f"quantizing to int8, calibrated on {len(texts):,} texts ...")
            calibration = [encode(tokenizer, texts[start:start + 32], input_names, max_length,
                                  truncation)
                           for start in range(0, len(texts), 32)]
            quantize_int8(model, calibration, example, tmp / INT8_NAME, opset)
            result["int8_calibration_texts"] = len(texts)
            int8 = OnnxBackend(tmp / INT8_NAME)
            # Informative only: a handful of sentences cannot judge int8 accuracy, an eval can.
            result["int8_path"] = str(out_dir / INT8_NAME)
            task = "multilabel" if multi_label else "multiclass"
            result["int8_agreement"] = agreement(
                probabilities(np.concatenate(reference), task),
                probabilities(np.concatenate([int8.logits(batch) for batch in batches]), task),
                multi_label=multi_label,
            )
    return result


def export(run_dir: str | Path, *, quantize: str | None = None,
           max_texts: int = AGREEMENT_TEXTS, progress: bool = True) -> ExportResult:
    """Export a run's model/ to RUN_DIR/onnx and measure agreement with the torch model;
    `progress` says each step on stderr.

    Agreement is measured on (up to `max_texts` of) the run's own validation texts, rebuilt
    from its config (a built-in dataset from the folder training read it from); on built-in
    sample sentences only when its data is no longer readable, with a warning. The int8
    calibration texts are sampled from the run's training rows: without them int8 is
    refused, never calibrated on a handful of built-in sentences.
    """
    from sentitune.inference.classifier import Classifier

    run = Run.open(run_dir)
    if not run.model_dir.is_dir():
        raise SentituneError(f"{run.path} has no merged model/; retrain with --merge-lora")
    if quantize is not None and quantize not in QUANTIZE_CHOICES:
        raise SentituneError(f"--quantize must be one of {', '.join(QUANTIZE_CHOICES)}, "
                             f"not '{quantize}'")
    say(progress, f"reading {run.config.data.dataset}: the run's texts, to calibrate and check "
                  "the export ...")
    try:
        splits = run.rebuilt_splits()
    except SentituneError as error:
        if quantize:
            raise SentituneError(f"int8 needs {run.path}'s training texts to calibrate on, "
                                 f"and they cannot be read: {error}") from None
        warn(f"agreement measured on built-in sentences: {error}")
        splits = None
    if splits is not None:
        texts = list(splits.validation["text"])[:max_texts]
        source = f"{run.config.data.dataset} (validation)"
        held_out = set(texts)
        pool = [text for text in splits.train["text"] if text not in held_out]
    else:
        texts, source, pool = list(SAMPLE_TEXTS), "built-in sample sentences", []
    calibration = (random.Random(0).sample(pool, min(CALIBRATION_TEXTS, len(pool))) or None
                   if quantize else None)
    report = export_onnx(run.model_dir, run.onnx_dir, quantize=quantize,
                         calibration_texts=calibration, max_length=run.max_length,
                         truncation=run.config.data.truncation, progress=progress)
    say(progress, f"measuring agreement with torch on {len(texts):,} texts ...")
    reference = Classifier.from_pretrained(run, device="cpu").predict_proba(texts)
    backends = ["onnx"] + (["onnx-int8"] if quantize else [])
    multi_label = run.task == "multilabel"
    report["agreement"] = {
        backend: agreement(reference, Classifier.from_pretrained(run, backend=backend)
                           .predict_proba(texts), multi_label=multi_label)
        for backend in backends
    }
    report["agreement_texts"] = source
    int8 = report["agreement"].get("onnx-int8")
    if int8 is not None and int8["label_agreement"] < INT8_MIN_AGREEMENT:
        warn(f"the int8 model gives the torch label on only {int8['label_agreement']:.1%} of "
             f"{int8['n']} texts of {source}; serve this run with "
             f"{option('backend', 'onnx')} (fp32) instead")
    return ExportResult(run.onnx_dir, report)
