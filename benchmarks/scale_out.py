"""Scale-out, side by side in one run: local predict vs Ray Data with 1..N actors, and
training samples/s in 1 vs N processes (torchrun; gloo on CPU, nccl on GPU).

Each measurement runs the real command line in its own process tree, end to end (Python,
Ray and model start-up included), on the same texts; peak resident memory is sampled per
process (the driver, each Ray actor). Ray's output is checked byte for byte against local
predict's.

    python benchmarks/scale_out.py [--run RUN_DIR] [--texts 20000] [--actors 1 2]
        [--train-model minilm] [--train-samples 512] [--procs 1 2] [--device auto]
        [--parts inference training] [--output results.json]

Without --run a small MiniLM run is trained first (scoring speed does not depend on its
accuracy). `--train-model DIR --random-init` trains a model built from DIR's config with
random weights (throughput only), for machines without the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from common import emit, machine

REPO = Path(__file__).resolve().parents[1]


def env(threads: int | None = None) -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), out.get("PYTHONPATH", "")])
    out.setdefault("TOKENIZERS_PARALLELISM", "false")
    out.setdefault("HF_HUB_OFFLINE", "1")
    if threads:
        out["OMP_NUM_THREADS"] = str(threads)
    return out


def role(process: psutil.Process) -> str:
    try:
        line = " ".join(process.cmdline())
    except psutil.Error:
        return "gone"
    if "MapWorker" in line:
        return "ray_actor"
    if line.startswith("ray::"):
        return "ray_task_worker"
    if "torch.distributed.run" in line:
        return "torchrun_agent"
    if "sentitune" in line:
        return "sentitune"
    return "ray_system" if "ray" in line else "other"


def measured(command: list[str], environment: dict) -> dict:
    """Run `command`; its wall time and the peak RSS (MB) of every process in its tree."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    peaks: dict[int, tuple[str, float]] = {}
    stop = threading.Event()

    def sample() -> None:
        root = psutil.Process(process.pid)
        while not stop.wait(0.1):
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for member in tree:
                try:
                    rss = member.memory_info().rss / 2**20
                except psutil.Error:
                    continue
                kind = role(member)
                old = peaks.get(member.pid, (kind, 0.0))
                peaks[member.pid] = (kind if kind != "gone" else old[0], max(old[1], rss))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    stop.set()
    sampler.join()
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{err[-3000:]}")
    by_role: dict[str, list[float]] = {}
    for kind, peak in peaks.values():
        if kind == "gone":
            continue
        by_role.setdefault(kind, []).append(round(peak, 1))
    return {"wall_s": round(wall, 2), "peak_rss_mb_by_process": by_role, "stdout": out.strip()}


def train_quick_run(folder: Path) -> Path:
    run = folder / "minilm-run"
    command = [sys.executable, "-m", "sentitune", "train", "--data", "sst2", "--model",
               "minilm", "--train-samples", "256", "--val-samples", "128", "--max-length",
               "64", "--epochs", "1", "--output", str(run), "--quiet"]
    subprocess.run(command, env=env(), check=True, capture_output=True)
    return run


def write_texts(path: Path, n: int) -> None:
    """n SST-2 training sentences (repeated when n exceeds them), one JSON object a line."""
    sys.path.insert(0, str(REPO / "src"))
    from sentitune.dataset.sources import iter_table

    data = Path(os.environ["SENTITUNE_DATA_DIR"]) / "sst2" / "train.tsv"
    texts = list(next(iter_table(data))["sentence"])
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"id": i, "text": texts[i % len(texts)]}) + "\n")


def compare_outputs(scored: Path, reference: Path) -> dict:
    """Same rows in the same order with the same labels; the largest probability gap (the
    sixth decimal can move with how texts are batched, hence padded)."""
    ours = [json.loads(line) for line in scored.read_text().splitlines()]
    theirs = [json.loads(line) for line in reference.read_text().splitlines()]
    same_rows = [(r["id"], r["text"]) for r in ours] == [(r["id"], r["text"]) for r in theirs]
    return {"same_rows_in_order": same_rows,
            "same_labels": [r["label"] for r in ours] == [r["label"] for r in theirs],
            "max_probability_difference": max(
                (abs(p - r2["probabilities"][k]) for r1, r2 in zip(ours, theirs, strict=True)
                 for k, p in r1["probabilities"].items()), default=0.0)}


def inference(args, folder: Path) -> dict:
    run = Path(args.run) if args.run else train_quick_run(folder)
    texts = folder / "texts.jsonl"
    write_texts(texts, args.texts)
    base = [sys.executable, "-m", "sentitune", "predict", str(run), "--input", str(texts),
            "--quiet", "--batch-size", "64"]
    rows = {}
    local = folder / "local.jsonl"
    rows["local"] = measured([*base, "--output", str(local)], env())
    cpus = os.cpu_count() or 1
    for actors in args.actors:
        out = folder / f"ray-{actors}.jsonl"
        rows[f"ray_{actors}_actors"] = measured(
            [*base, "--output", str(out), "--engine", "ray", "--ray-cpus",
             str(min(cpus, max(actors, 1))), "--actors", str(actors)], env())
        rows[f"ray_{actors}_actors"]["versus_local"] = compare_outputs(out, local)
    for row in rows.values():
        row["texts_per_s"] = round(args.texts / row["wall_s"], 1)
        row.pop("stdout")
    base_speed = rows["local"]["texts_per_s"]
    for row in rows.values():
        row["speedup_vs_local"] = round(row["texts_per_s"] / base_speed, 3)
    return {"run": str(run), "texts": args.texts, "rows": rows}


def random_init_model(config_dir: Path, folder: Path) -> Path:
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    out = folder / f"random-{config_dir.name}"
    config = AutoConfig.from_pretrained(config_dir, num_labels=2)
    AutoModelForSequenceClassification.from_config(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(config_dir).save_pretrained(out)
    return out


def training(args, folder: Path) -> dict:
    import torch

    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    gpus = torch.cuda.device_count() if cuda else 0
    model = (str(random_init_model(Path(args.train_model), folder)) if args.random_init
             else args.train_model)
    cpus = os.cpu_count() or 1
    rows, skipped = {}, []
    for procs in args.procs:
        if cuda and procs > gpus:
            skipped.append(f"{procs} processes: only {gpus} GPU(s) here (nccl needs one each)")
            continue
        output = folder / f"train-{procs}"
        launch = ([sys.executable, "-m", "sentitune"] if procs == 1 else
                  [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", str(procs), "-m", "sentitune"])
        command = [*launch, "train", "--data", "sst2", "--model", model, "--train-samples",
                   str(args.train_samples), "--val-samples", "256", "--max-length", "64",
                   "--epochs", "1", "--batch-size", str(args.batch_size), "--output",
                   str(output), "--quiet"]
        environment = env(None if cuda else max(1, cpus // procs))  # the cores, shared out
        if not cuda:
            environment["CUDA_VISIBLE_DEVICES"] = ""
        row = measured(command, environment)
        metrics = json.loads((output / "metrics.json").read_text())
        row.pop("stdout")
        row.update({"train_samples_per_s": metrics["train_samples_per_s"],
                    "train_runtime_s": metrics["train_runtime_s"],
                    "effective_batch_size": args.batch_size * procs,
                    "validation_accuracy": round(metrics["validation"]["accuracy"], 4),
                    "device": metrics["device"],
                    "threads_per_process": None if cuda else max(1, cpus // procs)})
        rows[f"{procs}_processes"] = row
    if "1_processes" in rows:
        for row in rows.values():
            row["samples_per_s_vs_1_process"] = round(
                row["train_samples_per_s"] / rows["1_processes"]["train_samples_per_s"], 3)
    return {"model": args.train_model, "random_init": args.random_init,
            "train_samples": args.train_samples, "device": "cuda" if cuda else "cpu",
            "rows": rows, "skipped": skipped}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["inference", "training"],
                        choices=["inference", "training"])
    parser.add_argument("--run", help="run directory to score with (default: train one)")
    parser.add_argument("--texts", type=int, default=20000)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--train-model", default="minilm")
    parser.add_argument("--random-init", action="store_true",
                        help="build --train-model from its config with random weights")
    parser.add_argument("--train-samples", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=16, help="per process")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--note", default="", help="free text saved with the result")
    parser.add_argument("--output")
    args = parser.parse_args()

    load_start = os.getloadavg()
    result = {"benchmark": "scale_out", "note": args.note}
    with tempfile.TemporaryDirectory() as tmp:
        if "inference" in args.parts:
            result["inference"] = inference(args, Path(tmp))
        if "training" in args.parts:
            result["training"] = training(args, Path(tmp))
    result["machine"] = machine(load_start)
    emit(result, args.output)


if __name__ == "__main__":
    main()
