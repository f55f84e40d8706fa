"""A real ``qwen3-rag serve`` process under load: backpressure (429), cancellation on disconnect, drain on SIGTERM."""

from __future__ import annotations

import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import pytest

from .conftest import AUTH, Server, start_server

QUERY = "What is the capital of China?"
LONG_REQUEST = [f"passage {i} about rivers, mountains and the capitals of the world" for i in range(300)]


def metric(server: Server, name: str) -> float:
    """The sum of a metric's samples in /metrics (all label values)."""
    text = httpx.get(f"{server.url}/metrics", headers=AUTH, timeout=10).text
    return sum(float(value) for value in re.findall(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE))


def rss_bytes(server: Server) -> int:
    with open(f"/proc/{server.process.pid}/status") as status:
        kilobytes = next(line.split()[1] for line in status if line.startswith("VmRSS:"))
    return int(kilobytes) * 1024


def until(condition: Callable[[], bool], what: str, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.02)


class PeakRss:
    """Samples the server's resident memory every 20 ms while the block runs."""

    def __init__(self, server: Server) -> None:
        self.server, self.peak, self._stop = server, rss_bytes(server), threading.Event()

    def __enter__(self) -> PeakRss:
        def sample() -> None:
            while not self._stop.wait(0.02):
                self.peak = max(self.peak, rss_bytes(self.server))

        self._sampler = threading.Thread(target=sample)
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._sampler.join()


@pytest.fixture(scope="module")
def limited(reranker_model: str, embedder_model: str) -> Iterator[Server]:
    server = start_server(reranker_model, embedder_model, "--max-concurrent-requests", "8")
    yield server
    server.process.terminate()
    server.process.wait(timeout=60)


def rerank(server: Server, documents: list[str], timeout: float = 120) -> httpx.Response:
    return httpx.post(
        f"{server.url}/v1/rerank", json={"query": QUERY, "documents": documents}, headers=AUTH, timeout=timeout
    )


def test_200_concurrent_requests_get_200_or_429_and_memory_stays_flat(limited):
    documents = [f"document {i}: the capital of a country, its rivers and its history" for i in range(40)]
    with PeakRss(limited) as one:
        assert rerank(limited, documents).status_code == 200
    with PeakRss(limited) as burst, ThreadPoolExecutor(200) as pool:
        responses = list(pool.map(lambda _: rerank(limited, documents, timeout=300), range(200)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) <= {200, 429} and statuses.count(200) >= 8 and statuses.count(429) > 0, statuses
    for response in responses:
        if response.status_code == 429:
            assert response.headers["Retry-After"] == "1"
            assert "(--max-concurrent-requests)" in response.json()["error"]["message"]
        else:
            assert len(response.json()["results"]) == len(documents)
    assert burst.peak <= 1.5 * one.peak, (burst.peak, one.peak)
    assert metric(limited, "qwen3_rag_rejected_requests_total") == statuses.count(429)
    assert rerank(limited, documents).status_code == 200  # every slot was given back


def test_a_client_that_disconnects_stops_its_packs(reranker_model, embedder_model):
    server = start_server(reranker_model, embedder_model, "--max-tokens-per-pack", "64")
    try:
        body = httpx.Request("POST", f"{server.url}/v1/rerank", json={"query": QUERY, "documents": LONG_REQUEST})
        address = urlparse(server.url)
        client = socket.create_connection((address.hostname, address.port))
        head = f"POST /v1/rerank HTTP/1.1\r\nHost: {address.netloc}\r\nContent-Type: application/json\r\n"
        head += f"Authorization: {AUTH['Authorization']}\r\nContent-Length: {len(body.read())}\r\n\r\n"
        client.sendall(head.encode() + body.read())
        until(lambda: metric(server, "qwen3_rag_packs_started") >= 3, "the first packs")
        client.close()
        until(lambda: metric(server, "qwen3_rag_cancelled_requests_total") == 1, "the cancellation")
        stopped_at = metric(server, "qwen3_rag_packs_started")
        time.sleep(1.0)
        assert metric(server, "qwen3_rag_packs_started") == stopped_at  # no pack started since
        assert stopped_at < len(LONG_REQUEST) / 2  # far fewer than the request needed: ~1 document per pack
    finally:
        server.process.terminate()
        server.process.wait(timeout=60)


def test_sigterm_finishes_the_8_requests_in_flight_then_exits_0(reranker_model, embedder_model):
    server = start_server(reranker_model, embedder_model, "--max-tokens-per-pack", "256")
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(rerank, server, LONG_REQUEST) for _ in range(8)]
        # 8 requests and this scrape in flight, and the model computing
        until(lambda: metric(server, "qwen3_rag_requests_in_flight") == 9.0, "8 requests in flight")
        server.process.send_signal(signal.SIGTERM)
        responses = [future.result(timeout=300) for future in futures]
    assert [response.status_code for response in responses] == [200] * 8
    assert all(len(response.json()["results"]) == len(LONG_REQUEST) for response in responses)
    assert server.process.wait(timeout=60) == 0
    log = server.process.stdout.read()
    assert "Waiting for application shutdown" in log or "Shutting down" in log
