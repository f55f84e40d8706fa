"""Load: one shared engine under many threads, and many concurrent async component calls, equal sequential calls."""

from __future__ import annotations

import asyncio
import random
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from .texts import BOUNDARY_DOCUMENTS, random_documents

CORPUS = BOUNDARY_DOCUMENTS + random_documents(30, seed=41)


def mixed_calls(count: int, seed: int) -> list[tuple[str, str, list[str]]]:
    """(kind, query, texts): reranks, document embeddings and query embeddings of 0 to 6 texts each."""
    rng = random.Random(seed)
    calls = []
    for index in range(count):
        kind = rng.choice(["rerank", "embed_documents", "embed_queries"])
        calls.append((kind, f"question {index % 7}?", rng.sample(CORPUS, rng.randint(0, 6))))
    return calls


def run_call(rerank_engine, embed_engine, call: tuple[str, str, list[str]]) -> list[float] | np.ndarray:
    kind, query, texts = call
    if kind == "rerank":
        return rerank_engine.score(query, texts)
    return embed_engine.encode(texts + [query] * (kind == "embed_queries"), is_query=kind == "embed_queries").embeddings


def test_eight_threads_times_fifty_mixed_calls_equal_sequential(rerank_engine, embed_engine):
    calls = mixed_calls(8 * 50, seed=42)
    sequential = [run_call(rerank_engine, embed_engine, call) for call in calls]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(lambda call: run_call(rerank_engine, embed_engine, call), calls))
    for expected, got in zip(sequential, threaded, strict=True):
        assert np.asarray(got).shape == np.asarray(expected).shape
        assert np.abs(np.asarray(got) - np.asarray(expected)).max(initial=0.0) <= 1e-5


@pytest.mark.asyncio
async def test_32_concurrent_async_component_calls_equal_sequential(reranker_model):
    haystack = pytest.importorskip("haystack")
    from langchain_core.documents import Document as LangChainDocument

    from qwen3_rag_components.haystack import Qwen3Ranker
    from qwen3_rag_components.langchain import Qwen3Reranker

    ranker = Qwen3Ranker(reranker_model, top_k=3, local_files_only=True)
    compressor = Qwen3Reranker(model=reranker_model, device="cpu", top_n=3, local_files_only=True)
    jobs = [(f"question {i}?", random.Random(i).sample(CORPUS, 5)) for i in range(16)]

    def haystack_docs(texts):
        return [haystack.Document(content=t) for t in texts]

    def langchain_docs(texts):
        return [LangChainDocument(page_content=t) for t in texts]

    expected_h = [[d.score for d in ranker.run(query=q, documents=haystack_docs(t))["documents"]] for q, t in jobs]
    expected_l = [
        [d.metadata["relevance_score"] for d in compressor.compress_documents(langchain_docs(t), q)] for q, t in jobs
    ]
    results = await asyncio.gather(
        *(ranker.run_async(query=q, documents=haystack_docs(t)) for q, t in jobs),
        *(compressor.acompress_documents(langchain_docs(t), q) for q, t in jobs),
    )
    got_h = [[d.score for d in r["documents"]] for r in results[:16]]
    got_l = [[d.metadata["relevance_score"] for d in r] for r in results[16:]]
    for expected, got in zip(expected_h + expected_l, got_h + got_l, strict=True):
        assert got == pytest.approx(expected, abs=1e-5)
