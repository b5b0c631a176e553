"""What the Open Inference Protocol costs over sentitune's own /predict, per request.

    python benchmarks/oip_overhead.py RUN_DIR [--single 300] [--batched 60]

One `sentitune serve` process; one client sends requests one after another (no
concurrency, so the micro-batcher never merges them and each request's latency is its
own). Cases, each with one text and with a batch of 32 texts:

    predict       POST /predict or /predict/batch (JSON, httpx)
    oip-json      POST /v2/models/NAME/infer with JSON tensors (httpx)
    oip-binary    the same through tritonclient.http, binary tensors both ways (its default)

The cases take turns request by request, so a change in the machine's load hits them alike.
Prints one JSON object: median and mean latency per case, and each v2 case's median over
`predict`'s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton
from common import emit, machine
from serve_load import TEXTS, running_server

from sentitune.run import Run

BATCH = 32


def cases(url: str, name: str, texts: list[str]) -> dict:
    """Callables sending `texts` (one, or a batch) each way; each checks its answer."""
    http = httpx.Client(base_url=url, timeout=60)
    client = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=60)
    tensor_json = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                               "data": texts}]}

    def predict() -> list[str]:
        if len(texts) == 1:
            return [http.post("/predict", json={"text": texts[0]}).json()["label"]]
        answer = http.post("/predict/batch", json={"texts": texts}).json()
        return [p["label"] for p in answer["predictions"]]

    def oip_json() -> list[str]:
        answer = http.post(f"/v2/models/{name}/infer", json=tensor_json).json()
        return next(o["data"] for o in answer["outputs"] if o["name"] == "label")

    def oip_binary() -> list[str]:
        tensor = triton.InferInput("text", [len(texts)], "BYTES")
        tensor.set_data_from_numpy(np.array(texts, dtype=object))
        return [v.decode() for v in client.infer(name, [tensor]).as_numpy("label")]

    return {"predict": predict, "oip-json": oip_json, "oip-binary": oip_binary}


def measure(calls: dict, requests: int) -> dict:
    expected = calls["predict"]()
    for name, call in calls.items():  # warm up, and the same labels every way
        assert call() == expected, name
    latencies: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(requests):
        for name, call in calls.items():  # request by request in turn: load drift hits all
            start = time.perf_counter()
            call()
            latencies[name].append((time.perf_counter() - start) * 1000)
    base = statistics.median(latencies["predict"])
    return {name: {"requests": len(values),
                   "p50_ms": round(statistics.median(values), 3),
                   "mean_ms": round(statistics.fmean(values), 3),
                   "p50_vs_predict": round(statistics.median(values) / base, 3)}
            for name, values in latencies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--single", type=int, default=300, help="one-text requests per case")
    parser.add_argument("--batched", type=int, default=60, help="32-text requests per case")
    parser.add_argument("--output")
    args = parser.parse_args()

    load_start = os.getloadavg()
    with running_server(args.run_dir) as (url, _):
        name = args.run_dir.resolve().name
        batch = (TEXTS * BATCH)[:BATCH]
        results = {
            "one_text": measure(cases(url, name, TEXTS[:1]), args.single),
            f"{BATCH}_texts": measure(cases(url, name, batch), args.batched),
        }
    emit({
        "benchmark": "oip_overhead",
        "run_dir": str(args.run_dir),
        "model_parameters": Run.open(args.run_dir).metrics["total_params"],
        "machine": machine(load_start),
        "note": "the cases took turns request by request, so compare them with each other",
        "results": results,
    }, args.output)


if __name__ == "__main__":
    main()
