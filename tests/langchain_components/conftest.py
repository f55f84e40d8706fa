"""Checkpoint paths and reference engines for the LangChain tests, and asyncio marks for LangChain's standard tests."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object):
    """Mark coroutine tests in this folder with ``asyncio``.

    langchain_tests' async standard tests carry no mark (LangChain runs pytest-asyncio in auto mode); the project runs
    strict mode. This wrapper runs inside pytest-asyncio's (``trylast``), so the mark is there when it converts items.
    """
    result = yield
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.asyncio)
    return result


@pytest.fixture(scope="session")
def reranker_model(reranker_paths: dict[str, Path]) -> str:
    return str(reranker_paths["tied"])


@pytest.fixture(scope="session")
def embedder_model(embedder_paths: dict[str, Path]) -> str:
    return str(embedder_paths["base"])


@pytest.fixture(scope="session")
def reference_reranker(reranker_model: str) -> Qwen3RerankEngine:
    """A separately loaded engine (not the shared cache): what the LangChain scores must equal."""
    return Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu")


@pytest.fixture(scope="session")
def reference_embedder(embedder_model: str) -> Qwen3EmbedEngine:
    return Qwen3EmbedEngine.from_pretrained(embedder_model, device="cpu")
