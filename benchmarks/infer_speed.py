"""Inference speed: sentitune's Classifier vs transformers.pipeline, side by side.

Same trained run, same texts (SST-2 dev sentences and IMDb test reviews, shuffled
together as a realistic stream), same truncation (the run's max length), one process.
The baseline is `pipeline("text-classification", batch_size=32)`, which batches texts
in arrival order; sentitune sorts by length so each batch pads only to its own longest
text, can run in bf16 (`torch-bf16`: autocast, on CPUs with AMX or AVX512-BF16 only) and
can run an exported ONNX graph (fp32 or dynamic int8).

    python benchmarks/infer_speed.py [RUN_DIR] [--imdb-texts 1000]

Run `sentitune export RUN_DIR --quantize int8` first for the ONNX rows (done here if
missing). Prints one JSON object: texts/s per backend, speedups over the pipeline,
label agreement with it, single-text latency percentiles, and the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np
from common import emit, machine

from sentitune.dataset import load_eval_split
from sentitune.exporting.run_export import export
from sentitune.hardware import cpu_bf16_flags
from sentitune.inference.classifier import Classifier
from sentitune.metrics import agreement


def load_texts(labels: list[str], task: str, imdb_texts: int, seed: int = 0) -> list[str]:
    sst2, _ = load_eval_split("sst2", "validation", labels, task)
    imdb, _ = load_eval_split("imdb", "test", labels, task)
    texts = list(sst2["text"]) + list(imdb["text"].sample(n=imdb_texts, random_state=seed))
    random.Random(seed).shuffle(texts)
    return texts


def timed(fn, *args) -> tuple[float, object]:
    started = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - started, out


def latency_ms(predict_one, texts: list[str]) -> dict:
    predict_one(texts[0])  # warm-up
    times = []
    for text in texts:
        started = time.perf_counter()
        predict_one(text)
        times.append((time.perf_counter() - started) * 1000)
    return {f"p{q}": round(float(np.percentile(times, q)), 2) for q in (50, 95, 99)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", default="runs/demo")
    parser.add_argument("--imdb-texts", type=int, default=1000)
    parser.add_argument("--latency-texts", type=int, default=200)
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import pipeline

    run_dir = Path(args.run_dir)
    if not (run_dir / "onnx" / "model.int8.onnx").exists():
        export(run_dir, quantize="int8")
    torch_clf = Classifier.from_pretrained(run_dir, device="cpu")
    texts = load_texts(torch_clf.labels, torch_clf.task, args.imdb_texts)
    pipe = pipeline("text-classification", model=str(run_dir / "model"), device="cpu")

    def run_pipeline(batch):
        return pipe(batch, batch_size=32, truncation=True, max_length=torch_clf.max_length)

    run_pipeline(texts[:64])  # warm-up, as for every backend below
    seconds, pipe_out = timed(run_pipeline, texts)
    baseline_labels = [row["label"] for row in pipe_out]
    rows = {"pipeline": {"texts_per_s": round(len(texts) / seconds, 1)}}
    reference = None
    # Emulated bf16 is slower than fp32: the arm is measured only where the CPU has it.
    backends = ("torch",) + (("torch-bf16",) if cpu_bf16_flags() else ()) + ("onnx", "onnx-int8")
    for backend in backends:
        clf = torch_clf if backend == "torch" else Classifier.from_pretrained(
            run_dir, backend=backend, device="cpu")
        clf.predict(texts[:64], batch_size=32)
        seconds, results = timed(lambda b, c=clf: c.predict(b, batch_size=32), texts)
        probs = np.array([[r["probabilities"][label] for label in clf.labels] for r in results])
        reference = probs if reference is None else reference
        same = np.mean([r["label"] == b for r, b in zip(results, baseline_labels, strict=True)])
        rows[backend] = {
            "texts_per_s": round(len(texts) / seconds, 1),
            "speedup_vs_pipeline": round(len(texts) / seconds / rows["pipeline"]["texts_per_s"],
                                         2),
            "label_agreement_with_pipeline": round(float(same), 4),
            "vs_torch": agreement(reference, probs),
            "latency_ms_single_text": latency_ms(lambda t, c=clf: c.predict([t]),
                                                 texts[:args.latency_texts]),
        }
    rows["pipeline"]["latency_ms_single_text"] = latency_ms(
        lambda t: pipe(t, truncation=True, max_length=torch_clf.max_length),
        texts[:args.latency_texts])
    result = {
        "benchmark": "infer_speed",
        "run_dir": str(run_dir),
        "texts": f"{len(texts)} (SST-2 dev + {args.imdb_texts} IMDb test reviews, shuffled)",
        "max_length": torch_clf.max_length,
        "batch_size": 32,
        "results": rows,
        "bf16_arm": "measured" if cpu_bf16_flags() else "skipped: no bf16 instructions",
        "machine": machine(load_start),
    }
    emit(result, args.output)


if __name__ == "__main__":
    main()
