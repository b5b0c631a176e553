"""Soak test of `sentitune serve`: many mixed requests, the server's memory watched throughout.

    python benchmarks/soak.py [RUN_DIR] [--requests 20000] [--clients 16] [--output FILE]

The server runs in its own process (with an API key). Clients send a seeded mix: single
texts, small batches, now and then a big batch, and bad requests of every kind (broken
JSON, blank or oversized texts, a wrong content type, no key). The server's resident
memory is sampled every `--sample-every` requests; a leak shows as growth after warm-up
(`rss_growth_after_warmup_mb`), not as the first rise while caches fill. Prints JSON.

A leak lives in the serving code (batching, middleware, metrics), not in the model's
size: on a small or shared machine, soak a small run (even a tiny random-weight one) so
that 20,000 requests take minutes.
"""

import argparse
import asyncio
import os
import random
import sys
import time
from pathlib import Path

import aiohttp
import psutil
from common import emit, machine
from serve_load import TEXTS, running_server

KEY = "soak-key"
WARMUP_REQUESTS = 1000


def request_mix(n: int, seed: int) -> list[tuple[str, str, bytes, dict]]:
    """(kind, path, body, headers) for `n` requests, in a seeded order."""
    rng = random.Random(seed)
    json_type = {"Content-Type": "application/json", "X-API-Key": KEY}

    def body(value) -> bytes:
        import json

        return json.dumps(value).encode()

    kinds = [
        ("single", 0.62), ("small_batch", 0.15), ("big_batch", 0.005), ("blank", 0.04),
        ("broken_json", 0.04), ("too_long", 0.03), ("wrong_type", 0.03), ("no_key", 0.03),
        ("health", 0.025), ("metrics", 0.02),
    ]
    names, weights = zip(*kinds, strict=True)
    mix = []
    for i in range(n):
        kind = rng.choices(names, weights)[0]
        text = f"{TEXTS[i % len(TEXTS)]} ({i})"
        if kind == "single":
            mix.append((kind, "/predict", body({"text": text}), json_type))
        elif kind == "small_batch":
            texts = [f"{rng.choice(TEXTS)} [{i}.{j}]" for j in range(rng.randint(2, 8))]
            mix.append((kind, "/predict/batch", body({"texts": texts}), json_type))
        elif kind == "big_batch":
            texts = [(f"{j}: " + TEXTS[4] * 20)[:2000] for j in range(32)]
            mix.append((kind, "/predict/batch", body({"texts": texts}), json_type))
        elif kind == "blank":
            mix.append((kind, "/predict", body({"text": " \r\n"}), json_type))
        elif kind == "broken_json":
            mix.append((kind, "/predict", b'{"text": "unterminated', json_type))
        elif kind == "too_long":
            mix.append((kind, "/predict", body({"text": "x" * 100_001}), json_type))
        elif kind == "wrong_type":
            mix.append((kind, "/predict", body({"text": text}),
                        {"Content-Type": "text/plain", "X-API-Key": KEY}))
        elif kind == "no_key":
            mix.append((kind, "/predict", body({"text": text}),
                        {"Content-Type": "application/json"}))
        else:
            mix.append((kind, f"/{kind}", b"", {"X-API-Key": KEY}))
    return mix


async def soak(url: str, mix: list, clients: int, server: psutil.Process,
               sample_every: int) -> dict:
    statuses: dict[str, dict[str, int]] = {}
    rss: list[tuple[int, float]] = []
    next_index = 0
    done = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:

        async def one_client() -> None:
            nonlocal next_index, done
            while next_index < len(mix):
                kind, path, body, headers = mix[next_index]
                next_index += 1
                method = client.get if path in ("/health", "/metrics") else client.post
                options = {"headers": headers} | ({"data": body} if body else {})
                try:
                    async with method(path, **options) as response:
                        await response.read()
                        status = str(response.status)
                except aiohttp.ClientError as error:
                    status = type(error).__name__
                counts = statuses.setdefault(kind, {})
                counts[status] = counts.get(status, 0) + 1
                done += 1
                if done % sample_every == 0:
                    rss.append((done, round(server.memory_info().rss / 2**20, 1)))
                    print(f"{done} requests, server RSS {rss[-1][1]} MB", file=sys.stderr)

        rss.append((0, round(server.memory_info().rss / 2**20, 1)))
        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    rss.append((done, round(server.memory_info().rss / 2**20, 1)))
    return {"seconds": round(elapsed, 1), "requests": done, "statuses": statuses, "rss": rss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="runs/demo", type=Path)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sample-every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="also write the JSON here")
    args = parser.parse_args()

    load_start = os.getloadavg()
    with running_server(args.run_dir, "--api-key", KEY) as (url, server):
        result = asyncio.run(soak(url, request_mix(args.requests, args.seed), args.clients,
                                  psutil.Process(server.pid), args.sample_every))
    samples = dict(result["rss"])
    after_warmup = next(mb for n, mb in result["rss"] if n >= WARMUP_REQUESTS)
    middle = min(result["rss"], key=lambda sample: abs(sample[0] - result["requests"] / 2))[1]
    end = result["rss"][-1][1]
    server_errors = sum(count for kinds in result["statuses"].values()
                        for status, count in kinds.items() if status.startswith("5")
                        or not status.isdigit())
    report = {
        "benchmark": "soak",
        "run_dir": str(args.run_dir),
        "requests": result["requests"],
        "clients": args.clients,
        "seconds": result["seconds"],
        "requests_per_s": round(result["requests"] / result["seconds"], 1),
        "statuses_by_kind": result["statuses"],
        "server_errors_or_failed_connections": server_errors,
        "rss_mb": {"start": samples[0], "after_warmup": after_warmup, "middle": middle,
                   "end": end},
        "rss_growth_after_warmup_mb": round(end - after_warmup, 1),
        "rss_samples_mb": result["rss"],
        "machine": machine(load_start),
    }
    emit(report, args.output)


if __name__ == "__main__":
    main()
