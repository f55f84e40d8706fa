"""The app in-process (``TestClient``) and as a real ``qwen3-rag serve`` process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

pytest.importorskip("fastapi", reason="the server needs the 'serve' extra")

from fastapi.testclient import TestClient

from qwen3_rag_components import EmbedOptions, LoadSpec, RerankOptions
from qwen3_rag_components.serve import ServeLimits, create_app, load_models

API_KEY = "test-key"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def make_client(
    reranker: str | None,
    embedder: str | None,
    *,
    limits: ServeLimits | None = None,
    api_key: str | None = API_KEY,
    rerank_options: RerankOptions | None = None,
) -> TestClient:
    served_reranker, served_embedder = load_models(
        None if reranker is None else LoadSpec(reranker, "cpu", local_files_only=True),
        None if embedder is None else LoadSpec(embedder, "cpu", local_files_only=True),
        rerank_options=rerank_options or RerankOptions(),
        embed_options=EmbedOptions(),
    )
    return TestClient(create_app(served_reranker, served_embedder, limits=limits, api_key=api_key))


@pytest.fixture(scope="module")
def client(reranker_model: str, embedder_model: str) -> TestClient:
    return make_client(reranker_model, embedder_model, limits=ServeLimits(max_documents=50, max_chars=2000))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen[str]
    url: str


def start_server(reranker: str, embedder: str, *extra: str) -> Server:
    """``python -m qwen3_rag_components.cli serve`` on a free port, once /health answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "qwen3_rag_components.cli",
        "serve",
        "--reranker",
        reranker,
        "--embedder",
        embedder,
    ]
    command += ["--device", "cpu", "--local-files-only", "--port", str(port), "--api-key", API_KEY, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return Server(process, url)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("the server did not answer /health within 180 s")


@pytest.fixture(scope="module")
def server(reranker_model: str, embedder_model: str) -> Iterator[Server]:
    running = start_server(reranker_model, embedder_model)
    yield running
    running.process.terminate()
    running.process.wait(timeout=60)
