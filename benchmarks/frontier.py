"""The accuracy / speed frontier: teacher, ensemble and students, side by side, plus how much
of the machine's matrix-multiply speed training and inference use.

    nohup flock /work/jobs/cpu.lock python benchmarks/frontier.py \
        runs/sst2-minilm-full runs/students/student3 runs/students/student2 ... \
        --ensemble runs/students/student3 runs/students/student3-seed43 \
        runs/students/student3-seed44 --output benchmarks/results/frontier-minilm-cpu.json \
        --plot benchmarks/results/frontier.png > frontier.log 2>&1 &

For every run (and the ensemble: mean calibrated probabilities of its members) and every
engine (torch fp32; torch bf16 autocast where the CPU has bf16 instructions; ONNX int8,
exported first when missing; the ensemble runs torch fp32 only): accuracy and texts/s at batch
32 after a warm-up, all in this one process, one after another, on SST-2 dev (872 sentences)
or, with --dataset imdb, on IMDb's test reviews (--texts N: a seeded, stratified N of them),
at the runs' own max length.

Utilisation: the machine's best matrix-multiply FLOP/s (torch.matmul on square matrices,
fp32 and bf16, best of several sizes and repeats) against the FLOP/s the models reach:
inference (FLOPs of one pass over the dev set, counted by torch's FlopCounterMode on the
batches the engine pads, times texts/s) and training (forward + backward FLOPs of a batch of
32 training sentences, counted the same way, over the measured time of full optimizer
steps: AdamW, bf16 autocast where the CPU has it, as `sentitune train` runs).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from common import emit, machine

BATCH = 32
# What each --dataset is scored on: (split, name in the JSON and plot, what one text is).
SCORED = {"sst2": ("validation", "SST-2 dev", "sentences"),
          "imdb": ("test", "IMDb test", "reviews")}
MATMUL_SIZES = (512, 1024, 2048)
TRAIN_STEPS = 8


def log(*parts) -> None:
    print(time.strftime("%H:%M:%S"), *parts, flush=True)


def peak_matmul_flops(dtype_name: str, repeats: int = 5) -> dict:
    """Best FLOP/s of torch.matmul on n x n matrices (2 n^3 FLOPs each)."""
    import torch

    dtype = getattr(torch, dtype_name)
    best = {"flops": 0.0}
    for n in MATMUL_SIZES:
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        torch.matmul(a, b)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            torch.matmul(a, b)
            flops = 2 * n**3 / (time.perf_counter() - t0)
            if flops > best["flops"]:
                best = {"flops": flops, "n": n}
    return {"gflops": round(best["flops"] / 1e9, 1), "best_n": best["n"]}


def batches(tokenizer, texts: list[str], max_length: int):
    """Length-sorted batches of BATCH texts, padded to their longest (as the engines do)."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    for start in range(0, len(order), BATCH):
        picked = [texts[i] for i in order[start:start + BATCH]]
        yield tokenizer(picked, truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")


def counted_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def inference_flops_per_text(run_dir: Path, texts: list[str], max_length: int) -> float:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model").eval()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")

    def forward():
        with torch.inference_mode():
            for batch in batches(tokenizer, texts, max_length):
                model(**batch)

    return counted_flops(forward) / len(texts)


def training_flops_per_s(run_dir: Path, texts: list[str], max_length: int, bf16: bool) -> dict:
    """FLOP/s of full training steps (forward, backward, AdamW) on batches of BATCH texts."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(run_dir / "model").train()
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "model")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    rng = np.random.default_rng(0)
    steps = [tokenizer([texts[i] for i in rng.choice(len(texts), BATCH, replace=False)],
                       truncation=True, max_length=max_length, padding=True,
                       return_tensors="pt") for _ in range(TRAIN_STEPS + 1)]

    def step(batch):
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = model(**batch, labels=torch.zeros(len(batch["input_ids"]),
                                                     dtype=torch.long)).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step(steps[0])  # warm-up
    flops = sum(counted_flops(lambda b=b: step(b)) for b in steps[1:])
    t0 = time.perf_counter()
    for batch in steps[1:]:
        step(batch)
    seconds = time.perf_counter() - t0
    return {"gflops": round(flops / seconds / 1e9, 1),
            "samples_per_s": round(TRAIN_STEPS * BATCH / seconds, 1),
            "precision": "bf16 autocast" if bf16 else "fp32"}


def engine_row(clf, texts: list[str], labels: np.ndarray) -> dict:
    clf.predict_proba(texts[:64], batch_size=BATCH)  # warm-up
    t0 = time.perf_counter()
    probs = clf.predict_proba(texts, batch_size=BATCH)
    seconds = time.perf_counter() - t0
    return {"accuracy": round(float((probs.argmax(1) == labels).mean()), 4),
            "texts_per_s": round(len(texts) / seconds, 1)}


def plot(rows: dict, path: Path, title: str, scored_on: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    markers = {"torch-fp32": "o", "torch-bf16": "s", "onnx-int8": "^"}
    for name, engines in rows.items():
        for engine, row in engines.items():
            ax.scatter(row["texts_per_s"], row["accuracy"], marker=markers[engine], s=40)
            ax.annotate(f"{name} {engine}", (row["texts_per_s"], row["accuracy"]),
                        fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel(f"texts/s ({scored_on}, batch 32, log scale)")
    ax.set_ylabel(f"{scored_on} accuracy")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run directories; the first is the teacher")
    parser.add_argument("--ensemble", nargs="+", default=[], help="runs averaged as one")
    parser.add_argument("--dataset", choices=list(SCORED), default="sst2",
                        help="the runs' dataset, scored on its split of SCORED")
    parser.add_argument("--texts", type=int,
                        help="a seeded, stratified N of the scored texts (default: all)")
    parser.add_argument("--output", help="also write the JSON here")
    parser.add_argument("--plot", help="frontier.png path")
    args = parser.parse_args()
    load_start = os.getloadavg()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentitune.dataset import load_eval_split
    from sentitune.dataset.labels import BINARY_NAMES
    from sentitune.dataset.splits import subset
    from sentitune.exporting.run_export import export
    from sentitune.hardware import cpu_bf16_flags
    from sentitune.inference.classifier import Classifier

    split, scored_on, unit = SCORED[args.dataset]
    frame, _ = load_eval_split(args.dataset, split, BINARY_NAMES, "binary")
    if args.texts is not None and args.texts < len(frame):
        frame = subset(frame, args.texts, 0, "binary", split)
    texts, labels = list(frame["text"]), np.asarray(frame["label"])
    bf16 = bool(cpu_bf16_flags())
    engines = {"torch-fp32": "torch", **({"torch-bf16": "torch-bf16"} if bf16 else {}),
               "onnx-int8": "onnx-int8"}
    peaks = {"fp32": peak_matmul_flops("float32"),
             **({"bf16": peak_matmul_flops("bfloat16")} if bf16 else {})}
    log("matmul peaks", peaks)
    rows: dict[str, dict] = {}
    utilisation: dict[str, dict] = {}
    for run_dir in map(Path, args.runs):
        name = run_dir.name
        if not (run_dir / "onnx" / "model.int8.onnx").is_file():
            export(run_dir, quantize="int8")
        rows[name] = {}
        for engine, backend in engines.items():
            clf = Classifier.from_pretrained(run_dir, backend=backend, device="cpu")
            rows[name][engine] = engine_row(clf, texts, labels)
            log(name, engine, rows[name][engine])
        max_length = clf.max_length  # every run here reads its teacher's data and length
        per_text = inference_flops_per_text(run_dir, texts, max_length)
        utilisation[name] = {"inference_gflops_per_text": round(per_text / 1e9, 4), **{
            engine: {"gflops": round(per_text * row["texts_per_s"] / 1e9, 1),
                     "of_peak": round(per_text * row["texts_per_s"]
                                      / (peaks["bf16" if engine == "torch-bf16" and bf16
                                               else "fp32"]["gflops"] * 1e9), 4)}
            for engine, row in rows[name].items()}}
    if args.ensemble:
        ensemble = Classifier.from_pretrained(args.ensemble, device="cpu")
        rows[f"ensemble of {len(args.ensemble)}"] = {
            "torch-fp32": engine_row(ensemble, texts, labels)}
    teacher = Path(args.runs[0])
    from sentitune.dataset.sources import read_source

    train_texts = list(read_source(args.dataset)[0]["train"]["text"][:5000])
    training = {"fp32": training_flops_per_s(teacher, train_texts, max_length, False),
                **({"bf16": training_flops_per_s(teacher, train_texts, max_length, True)}
                   if bf16 else {})}
    for key, found in training.items():
        found["of_peak"] = round(found["gflops"] / peaks[key]["gflops"], 4)
    result = {
        "benchmark": "frontier",
        "texts": f"{scored_on}, {len(texts)} {unit}, batch {BATCH}",
        "results": rows,
        "matmul_peak": peaks,
        "inference_utilisation": utilisation,
        "utilisation_note": "of_peak: model FLOP/s over the matmul peak of its precision "
                            "(torch-bf16: bf16; torch-fp32 and onnx-int8: fp32, no int8 "
                            "matmul peak is measured); FLOPs counted by FlopCounterMode "
                            "(matmuls and attention; element-wise work not counted)",
        f"training_utilisation ({teacher.name})": training,
        "machine": machine(load_start),
    }
    if args.plot:
        cpu = result["machine"]["cpu"]
        plot(rows, Path(args.plot), f"{scored_on} accuracy vs speed on {cpu} "
             f"({result['machine']['cpu_count']} cores, load {load_start[0]:.1f} at start)",
             scored_on)
    emit(result, args.output)


if __name__ == "__main__":
    main()
