"""Int8 accuracy: plain dynamic quantization vs sentitune's int8 export, side by side.

Both start from the same trained run and quantize the same weight MatMuls to int8 with
per-channel scales. The baseline is ONNX Runtime's `quantize_dynamic` on the fp32 graph,
as a tutorial would run it (weights and embeddings); sentitune first rewrites each
token-wise Linear (per-token input scaling + SmoothQuant, see exporting.int8._Int8ReadyLinear),
for each smoothing alpha given. Texts are those of infer_speed.py; the reference is the
run's torch model.

    python benchmarks/int8_variants.py [RUN_DIR] [--alphas 0.3 0.5 0.6]

Prints one JSON object: per variant, label agreement and probability differences with
torch, texts/s, and the file size.
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from common import emit, machine
from infer_speed import load_texts

import sentitune.exporting.int8 as int8
from sentitune.dataset import load_eval_split
from sentitune.exporting.onnx import agreement
from sentitune.exporting.run_export import export_onnx
from sentitune.inference.backends import OnnxBackend
from sentitune.inference.classifier import Classifier
from sentitune.run import INT8_NAME


def measure(clf: Classifier, onnx_file: Path, texts: list[str], reference: np.ndarray) -> dict:
    clf.backend = OnnxBackend(onnx_file)  # same tokenization and batching for every graph
    clf.predict_proba(texts[:64], batch_size=32)
    started = time.perf_counter()
    probs = clf.predict_proba(texts, batch_size=32)
    seconds = time.perf_counter() - started
    found = agreement(reference, probs)
    return {
        "label_agreement": round(found["label_agreement"], 4),
        "max_prob_diff": round(found["max_prob_diff"], 4),
        "mean_prob_diff": round(float(np.abs(reference - probs).max(axis=1).mean()), 4),
        "texts_per_s": round(len(texts) / seconds, 1),
        "size_mb": round(onnx_file.stat().st_size / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", default="runs/demo")
    parser.add_argument("--imdb-texts", type=int, default=500)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.3, 0.5, 0.6])
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from onnxruntime.quantization import QuantType, quantize_dynamic

    run_dir = Path(args.run_dir)
    torch_clf = Classifier.from_pretrained(run_dir, device="cpu")
    texts = load_texts(torch_clf.labels, torch_clf.task, args.imdb_texts)
    reference = torch_clf.predict_proba(texts, batch_size=32)
    # Calibration as `sentitune export` draws it: training texts, none of the measured ones.
    train, _ = load_eval_split("sst2", "train", torch_clf.labels, torch_clf.task)
    pool = sorted(set(train["text"]) - set(texts))
    calibration = random.Random(0).sample(pool, int8.CALIBRATION_TEXTS)
    clf = Classifier.from_pretrained(run_dir, backend="onnx")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(run_dir / "model", Path(tmp) / "fp32")["onnx_path"]
        rows["fp32"] = measure(clf, Path(fp32), texts, reference)
        plain = Path(tmp) / "plain.int8.onnx"
        quantize_dynamic(fp32, plain, weight_type=QuantType.QInt8,
                         op_types_to_quantize=["MatMul", "Gather"], per_channel=True)
        rows["plain_dynamic_int8"] = measure(clf, plain, texts, reference)
        for alpha in args.alphas:
            int8.SMOOTHING_ALPHA = alpha
            out = Path(tmp) / f"alpha{alpha}"
            export_onnx(run_dir / "model", out, quantize="int8",
                               calibration_texts=calibration)
            rows[f"sentitune_int8_alpha_{alpha}"] = measure(clf, out / INT8_NAME, texts,
                                                            reference)
    emit({
        "benchmark": "int8_variants",
        "run_dir": str(run_dir),
        "texts": f"{len(texts)} (SST-2 dev + {args.imdb_texts} IMDb test reviews, shuffled)",
        "calibration": f"{len(calibration)} SST-2 train sentences",
        "reference": "the run's torch model",
        "results": rows,
        "machine": machine(load_start),
    }, args.output)


if __name__ == "__main__":
    main()
