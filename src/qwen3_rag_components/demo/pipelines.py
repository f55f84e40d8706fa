"""The demo's RAG runs, one per framework: index, retrieve, rerank; each keeps the meta the components report."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..engine import RunMeta
from .corpus import Passage
from .models import DemoError, Models

RETRIEVE_K = 20
RERANK_K = 3


@dataclass(frozen=True)
class Hit:
    topic: str
    score: float
    text: str


@dataclass(frozen=True)
class Answer:
    question: str
    seconds: float  # wall time of the whole query (embed, retrieve, rerank)
    hits: list[Hit]
    query_meta: RunMeta
    rerank_meta: RunMeta


@dataclass
class Report:
    load_s: float = 0.0
    index_s: float = 0.0
    index_meta: RunMeta | None = None
    answers: list[Answer] = field(default_factory=list)


class ModelLoadError(Exception):
    """Loading a model failed (missing files, no network, not a Qwen3 checkpoint)."""


def _load(loaders: Sequence[Callable[[], object]]) -> float:
    """Run the loaders (``warm_up`` and the like); seconds taken. Loading errors become :class:`ModelLoadError`."""
    start = time.perf_counter()
    try:
        for load in loaders:
            load()
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{type(error).__name__}: {error}") from error
    return time.perf_counter() - start


def run_haystack(passages: list[Passage], questions: Sequence[str], models: Models, device: str | None) -> Report:
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import ComponentDevice

    from ..haystack import Qwen3DocumentEmbedder, Qwen3Ranker, Qwen3TextEmbedder

    placement: dict[str, Any] = {
        "device": ComponentDevice.from_str(device) if device else None,
        "local_files_only": models.local_files_only,
    }
    doc_embedder = Qwen3DocumentEmbedder(models.embedder, progress_bar=True, **placement)
    text_embedder = Qwen3TextEmbedder(models.embedder, **placement)
    ranker = Qwen3Ranker(models.reranker, top_k=RERANK_K, **placement)
    report = Report(load_s=_load([doc_embedder.warm_up, text_embedder.warm_up, ranker.warm_up]))

    store = InMemoryDocumentStore()
    start = time.perf_counter()
    indexed = doc_embedder.run(documents=[Document(content=p.text, meta={"topic": p.topic}) for p in passages])
    store.write_documents(indexed["documents"])
    report.index_s, report.index_meta = time.perf_counter() - start, RunMeta(**indexed["meta"])

    pipeline = Pipeline()
    pipeline.add_component("text_embedder", text_embedder)
    pipeline.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=RETRIEVE_K))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("text_embedder.embedding", "retriever.query_embedding")
    pipeline.connect("retriever.documents", "ranker.documents")
    for question in questions:
        start = time.perf_counter()
        # The components' `meta` outputs are not connected, so the pipeline returns them with the ranked documents.
        result = pipeline.run({"text_embedder": {"text": question}, "ranker": {"query": question}})
        elapsed = time.perf_counter() - start
        hits = [Hit(d.meta["topic"], float(d.score or 0.0), d.content or "") for d in result["ranker"]["documents"]]
        metas = RunMeta(**result["text_embedder"]["meta"]), RunMeta(**result["ranker"]["meta"])
        report.answers.append(Answer(question, elapsed, hits, *metas))
    return report


def run_langchain(passages: list[Passage], questions: Sequence[str], models: Models, device: str | None) -> Report:
    try:
        from langchain_classic.retrievers import ContextualCompressionRetriever
    except ImportError as error:
        raise DemoError(
            f"--framework langchain needs ContextualCompressionRetriever: pip install langchain-classic ({error})"
        ) from error
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore

    from ..langchain import Qwen3Embeddings, Qwen3Reranker

    placement: dict[str, Any] = {"device": device, "local_files_only": models.local_files_only}
    embeddings = Qwen3Embeddings(model=models.embedder, show_progress=True, **placement)
    reranker = Qwen3Reranker(model=models.reranker, top_n=RERANK_K, **placement)
    report = Report(load_s=_load([lambda: embeddings.holder.engine, lambda: reranker.holder.engine]))

    store = InMemoryVectorStore(embedding=embeddings)
    start = time.perf_counter()
    store.add_documents([Document(p.text, metadata={"topic": p.topic}) for p in passages])
    report.index_s, report.index_meta = time.perf_counter() - start, embeddings.last_meta

    retriever = ContextualCompressionRetriever(
        base_compressor=reranker, base_retriever=store.as_retriever(search_kwargs={"k": RETRIEVE_K})
    )
    for question in questions:
        start = time.perf_counter()
        docs = retriever.invoke(question)
        elapsed = time.perf_counter() - start
        hits = [Hit(d.metadata["topic"], float(d.metadata["relevance_score"]), d.page_content) for d in docs]
        query_meta, rerank_meta = embeddings.last_meta, reranker.last_meta  # set by the calls just made
        assert query_meta is not None and rerank_meta is not None
        report.answers.append(Answer(question, elapsed, hits, query_meta, rerank_meta))
    return report
