"""Load test of `sentitune serve`: throughput and latency with micro-batching on and off.

    python benchmarks/serve_load.py [RUN_DIR] [--requests 1000] [--clients 1 8 32] [--backend]
    python benchmarks/serve_load.py [RUN_DIR] --fairness [--baseline-ref REF] [--seconds 60]

`--fairness` measures single-text latency while another client keeps sending big batch
requests (256 texts of 2,000 characters), for this checkout's server and for the server
of `--baseline-ref` (extracted with `git archive`, started the same way), one after the
other on the same machine, with the server's resident memory before and after.

For each mode the server runs in its own process (as in production, and so the load
generator does not share its interpreter), on a free loopback port. Each client count
sends the same fixed number of POST /predict requests, each level also bounded in time.
Prints one JSON object. The load generator runs on the same machine, so on a small
machine it takes CPU from the server: compare modes with each other, not with other
machines.
"""

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
from common import emit, machine

# Review-like texts of varied length, so batches pad the way real traffic does.
TEXTS = [
    "great film",
    "I did not enjoy this at all, the plot made no sense and the acting was wooden.",
    "An absolute delight from start to finish; the cast is wonderful and the score moving.",
    "meh",
    "It starts slowly, but the second half is gripping and the ending earns its tears. "
    "Worth seeing on a big screen if you can, though it is a little long.",
    "Terrible. Avoid.",
    "the cinematography is lovely but the story is thin and the dialogue clumsy",
    "Not bad, not great.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(run_dir: Path, port: int, log, *options: str,
                 source: Path | None = None) -> subprocess.Popen:
    """`sentitune serve RUN_DIR OPTIONS...` itself, without an API key whatever the
    environment holds; from the `source` tree's src/ when given."""
    command = [sys.executable, "-m", "sentitune.cli", "serve", str(run_dir), "--port", str(port),
               *options]
    from sentitune.server import API_KEY_ENV

    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,  # uvicorn's access log, one line per request
        stderr=log,
    )


def wait_ready(url: str, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}; see its log")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server was not ready within {timeout:.0f} s")


@contextmanager
def running_server(run_dir: Path, *options: str, source: Path | None = None
                   ) -> Iterator[tuple[str, subprocess.Popen]]:
    """A ready `sentitune serve` on a free port: (its URL, its process). Stopped on exit;
    if the load gives up (SystemExit), the tail of the server's log is printed first."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        server = start_server(run_dir, port, log, *options, source=source)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url, server)
            yield url, server
        except SystemExit:
            log.seek(0)
            print(log.read()[-4000:], file=sys.stderr)
            raise
        finally:
            server.terminate()
            server.wait(timeout=60)


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[index]


async def load(url: str, clients: int, requests: int, time_limit: float) -> dict:
    """`clients` concurrent loops share `requests` requests; none starts after the limit.

    aiohttp, not httpx: on this 2-core machine httpx spent about 1.7 ms of CPU per request
    (GET /health peaked at 556 requests/s against 10,000 with aiohttp), so the load
    generator, not the server, set the throughput it measured.
    """
    latencies: list[float] = []
    errors = 0
    issued = 0
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:

        async def health() -> None:
            async with client.get("/health") as response:
                await response.read()

        # Open the connections first, so connection setup is not measured.
        await asyncio.gather(*(health() for _ in range(clients)))
        start = time.perf_counter()
        deadline = start + time_limit

        async def one_client() -> None:
            nonlocal issued, errors
            while issued < requests and time.perf_counter() < deadline:
                text = TEXTS[issued % len(TEXTS)]
                issued += 1
                sent = time.perf_counter()
                try:
                    async with client.post("/predict", json={"text": text}) as response:
                        await response.read()
                        ok = response.status == 200
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "requests": issued,
        "errors": errors,
        "seconds": round(elapsed, 3),
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }


def batch_calls(url: str) -> dict:
    """Model calls and texts so far, from the server's own metrics."""
    found = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("sentitune_batch_size_count", "sentitune_batch_size_sum"):
            found[name] = float(value)
    return found


def run_mode(run_dir: Path, micro_batching: bool, args: argparse.Namespace) -> dict:
    options = ["--backend", args.backend, *([] if micro_batching else ["--no-batching"])]
    with running_server(run_dir, *options) as (url, _):
        asyncio.run(load(url, 4, 40, args.time_limit))  # warm the server's code paths
        results = {}
        for clients in args.clients:
            before = batch_calls(url)
            result = asyncio.run(load(url, clients, args.requests, args.time_limit))
            after = batch_calls(url)
            calls = after["sentitune_batch_size_count"] - before["sentitune_batch_size_count"]
            texts = after["sentitune_batch_size_sum"] - before["sentitune_batch_size_sum"]
            result["mean_batch_size"] = round(texts / calls, 2) if calls else None
            results[str(clients)] = result
        return results


# A big batch request as in the issue: 256 review-length texts of 2,000 characters.
BIG_TEXT = ("The first hour drags, the second is better; the cast does what it can with a thin "
            "script, and the score is lovely. ") * 20
BIG_BATCH = [f"{i}. {BIG_TEXT}"[:2000] for i in range(256)]
SINGLE_CLIENTS = 4


async def fairness_load(url: str, seconds: float) -> dict:
    """One client sends big batches back to back; SINGLE_CLIENTS others send single texts,
    each one at a time."""
    singles: list[float] = []
    batches: list[float] = []
    statuses: dict[str, int] = {}
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(url, timeout=timeout) as client:
        deadline = time.perf_counter() + seconds

        async def timed(path: str, body: dict, into: list[float]) -> None:
            sent = time.perf_counter()
            async with client.post(path, json=body) as response:
                await response.read()
                statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
                if response.status == 200:
                    into.append(time.perf_counter() - sent)

        async def batch_client() -> None:
            while time.perf_counter() < deadline:
                await timed("/predict/batch", {"texts": BIG_BATCH}, batches)

        async def single_client() -> None:
            await asyncio.sleep(0.5)  # the first batch is on the model
            i = 0
            while time.perf_counter() < deadline:
                await timed("/predict", {"text": TEXTS[i % len(TEXTS)]}, singles)
                i += 1

        await asyncio.gather(batch_client(), *(single_client() for _ in range(SINGLE_CLIENTS)))
    singles.sort()
    batches.sort()
    return {
        "statuses": statuses,
        "single_requests": len(singles),
        "single_p50_ms": round(percentile(singles, 0.50) * 1000, 1),
        "single_p99_ms": round(percentile(singles, 0.99) * 1000, 1),
        "single_max_ms": round(max(singles, default=float("nan")) * 1000, 1),
        "batch_requests": len(batches),
        "batch_p50_s": round(percentile(batches, 0.50), 2),
    }


def rss_mb(pid: int) -> float:
    import psutil

    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def fairness_mode(run_dir: Path, source: Path | None, seconds: float, backend: str) -> dict:
    with running_server(run_dir, "--backend", backend, source=source) as (url, server):
        asyncio.run(load(url, 4, 40, 30))  # warm up
        before = rss_mb(server.pid)
        result = asyncio.run(fairness_load(url, seconds))
        result["rss_mb_before"], result["rss_mb_after"] = before, rss_mb(server.pid)
        return result


def fairness(args: argparse.Namespace) -> dict:
    repo = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as baseline:
        archive = subprocess.run(["git", "-C", str(repo), "archive", args.baseline_ref, "src"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", baseline], input=archive, check=True)
        load_start = os.getloadavg()
        results = {
            f"before ({args.baseline_ref})": fairness_mode(args.run_dir, Path(baseline),
                                                           args.seconds, args.backend),
            "after (this checkout)": fairness_mode(args.run_dir, None, args.seconds,
                                                   args.backend),
        }
    before, after = results.values()
    return {
        "benchmark": "serve_fairness",
        "run_dir": str(args.run_dir),
        "backend": args.backend,
        "scenario": "one client sends POST /predict/batch with 256 texts of 2,000 characters "
                    f"back to back; {SINGLE_CLIENTS} others send single texts, each one at a "
                    f"time; {args.seconds:g} s per server",
        "results": results,
        "single_p99_ratio_before_after": round(before["single_p99_ms"] / after["single_p99_ms"],
                                               1),
        "machine": machine(load_start),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", default="runs/demo", type=Path)
    parser.add_argument("--requests", type=int, default=1000, help="per client count and mode")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--time-limit", type=float, default=30, help="seconds per level at most")
    parser.add_argument("--backend", default="torch", help="torch, onnx or onnx-int8")
    parser.add_argument("--output", help="also write the JSON here")
    parser.add_argument("--fairness", action="store_true",
                        help="single-text latency beside big batches, before and after")
    parser.add_argument("--baseline-ref", default="1c83078",
                        help="git revision of the 'before' server (default: before fair "
                             "batching)")
    parser.add_argument("--seconds", type=float, default=60, help="per server, --fairness")
    args = parser.parse_args()

    from sentitune.errors import SentituneError
    from sentitune.run import Run

    try:
        Run.open(args.run_dir)
    except SentituneError as exc:
        raise SystemExit(f"error: {exc}") from None

    if args.fairness:
        emit(fairness(args), args.output)
        return
    load_start = os.getloadavg()
    modes = {"batching_on": True, "batching_off": False}
    results = {name: run_mode(args.run_dir, on, args) for name, on in modes.items()}
    most = str(max(args.clients))
    on, off = results["batching_on"][most], results["batching_off"][most]
    report = {
        "benchmark": "serve_load",
        "run_dir": str(args.run_dir),
        "backend": args.backend,
        "requests_per_level": args.requests,
        "results": results,
        f"throughput_ratio_on_off_at_{most}_clients": (
            round(on["throughput_rps"] / off["throughput_rps"], 2)
            if off["throughput_rps"]
            else None
        ),
        "machine": machine(load_start),
    }
    emit(report, args.output)


if __name__ == "__main__":
    main()
