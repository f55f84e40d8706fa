"""Load test of ``qwen3-rag serve``: N concurrent HTTP clients on loopback, next to the same work in-process.

Starts the server on a random 0.6B-geometry reranker (``--layers``), sends ``--requests`` rerank requests of
``--passages`` passages each, all at once, and reports requests/s, p50/p95 latency, errors (must be 0) and the
server's peak memory above its loaded weights; then makes the same calls with ``score_async`` in this process.
Bounded: one batch of requests, a timeout per request, loopback only.

    python bench/serve_load.py --layers 4 --requests 64 --passages 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

from common import WORKLOADS, cpu_name, make_workload, peak_rss_mb, random_checkpoint, reset_peak_rss, rss_mb
from qwen3_rag_components import Qwen3RerankEngine
from qwen3_rag_components.engine.service import score_requests_async


def requests_of(count: int, passages: int) -> list[dict]:
    workload = make_workload(WORKLOADS["R"])
    documents = workload.documents
    return [
        {
            "query": f"{workload.query} ({i})",
            "documents": [documents[(i * 7 + j) % len(documents)] for j in range(passages)],
        }
        for i in range(count)
    ]


def server_memory_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


async def over_http(url: str, bodies: list[dict]) -> tuple[float, list[float], int, list[list[float]]]:
    """Wall time, per-request latencies, errors, and the scores in input order of each request."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:

        async def one(body: dict) -> tuple[float, int, list[float]]:
            start = time.perf_counter()
            response = await client.post("/v1/rerank", json=body)
            elapsed = time.perf_counter() - start
            if response.status_code != 200:
                return elapsed, 1, []
            results = sorted(response.json()["results"], key=lambda r: r["index"])
            return elapsed, 0, [r["relevance_score"] for r in results]

        start = time.perf_counter()
        outcomes = await asyncio.gather(*(one(body) for body in bodies))
        wall = time.perf_counter() - start
    return wall, [o[0] for o in outcomes], sum(o[1] for o in outcomes), [o[2] for o in outcomes]


async def in_process(engine: Qwen3RerankEngine, bodies: list[dict]) -> tuple[float, list[float], list[list[float]]]:
    async def one(body: dict) -> tuple[float, list[float]]:
        start = time.perf_counter()
        scores = (await score_requests_async(engine, [(body["query"], body["documents"])])).scores[0]
        return time.perf_counter() - start, scores

    start = time.perf_counter()
    outcomes = await asyncio.gather(*(one(body) for body in bodies))
    return time.perf_counter() - start, [o[0] for o in outcomes], [o[1] for o in outcomes]


def start_server(model: Path, port: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "qwen3_rag_components.cli", "serve", "--reranker", str(model)]
    command += ["--device", "cpu", "--local-files-only", "--port", str(port), "--max-documents", "100000"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.25)
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
    process.kill()
    raise RuntimeError("the server did not start")


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q) - 1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--requests", type=int, default=64, help="concurrent rerank requests")
    parser.add_argument("--passages", type=int, default=20, help="passages per request")
    args = parser.parse_args(argv)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    model = random_checkpoint("reranker", args.layers)
    bodies = requests_of(args.requests, args.passages)
    flags = sorted({f for f in Path("/proc/cpuinfo").read_text().split() if f.startswith(("avx", "amx", "fma"))})
    print(f"{cpu_name()} ({' '.join(flags)}), torch threads {torch.get_num_threads()}, {args.layers}-layer 0.6B, fp32")
    print(f"{args.requests} concurrent rerank requests x {args.passages} passages, loopback")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = start_server(model, port)
    try:
        url = f"http://127.0.0.1:{port}"
        asyncio.run(over_http(url, bodies[:1]))  # warm-up
        loaded = server_memory_mb(server.pid, "VmRSS")
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")  # peak counter from here
        wall, latencies, errors, http_scores = asyncio.run(over_http(url, bodies))
        server_peak = server_memory_mb(server.pid, "VmHWM") - loaded
    finally:
        server.terminate()
        server.wait(timeout=60)

    engine = Qwen3RerankEngine.from_pretrained(str(model), device="cpu", local_files_only=True)
    asyncio.run(in_process(engine, bodies[:1]))
    engine_loaded = rss_mb()
    reset_peak_rss()
    local_wall, local_latencies, local_scores = asyncio.run(in_process(engine, bodies))
    local_peak = peak_rss_mb() - engine_loaded
    worst = max(abs(a - b) for h, s in zip(http_scores, local_scores, strict=True) for a, b in zip(h, s, strict=True))

    rows = [
        ("over HTTP", wall, latencies, server_peak, errors),
        ("in-process", local_wall, local_latencies, local_peak, 0),
    ]
    print(f"{'':12} {'req/s':>8} {'p50 s':>8} {'p95 s':>8} {'peak MB above loaded':>22} {'errors':>7}")
    for name, total, lat, peak, errs in rows:
        p50, p95 = percentile(lat, 50), percentile(lat, 95)
        print(f"{name:12} {len(bodies) / total:8.2f} {p50:8.2f} {p95:8.2f} {peak:22.0f} {errs:7d}")
    print(f"throughput over HTTP / in-process: x{local_wall / wall:.3f}; max |score difference| {worst:.1e}")


if __name__ == "__main__":
    main()
