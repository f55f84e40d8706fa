"""InMemoryVectorStore + Qwen3Embeddings retrieval, reranked by Qwen3Reranker in a ContextualCompressionRetriever."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_classic.retrievers import ContextualCompressionRetriever
from langchain_core.documents import Document
from langchain_core.vectorstores import InMemoryVectorStore

from qwen3_rag_components.langchain import Qwen3Embeddings, Qwen3Reranker

QUERY = "how do vaccines work?"
TEXTS = [
    "Vaccines train the immune system to recognise a pathogen.",
    "The recipe calls for two cups of flour and one egg.",
    "Antibodies bind to antigens on the surface of viruses.",
    "Iron oxide forms when iron reacts with oxygen and water.",
    "Herd immunity protects people who cannot be vaccinated.",
    "The borrow checker enforces ownership rules at compile time.",
    "mRNA vaccines carry instructions to make a spike protein.",
    "Paris is the capital of France.",
]
K = 6


@pytest.fixture
def pipeline(reranker_model: str, embedder_model: str):
    embeddings = Qwen3Embeddings(model=embedder_model, device="cpu", local_files_only=True)
    store = InMemoryVectorStore(embedding=embeddings)
    ids = store.add_documents([Document(t, id=f"doc-{i}", metadata={"n": i}) for i, t in enumerate(TEXTS)])
    base = store.as_retriever(search_kwargs={"k": K})
    reranker = Qwen3Reranker(model=reranker_model, device="cpu", local_files_only=True, top_n=3)
    return store, ids, base, ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)


def test_store_vectors_are_the_engine_vectors(pipeline, reference_embedder):
    store, ids, _, _ = pipeline
    stored = np.array([store.store[i]["vector"] for i in ids])
    assert np.array_equal(stored, np.array(reference_embedder.embed_documents(TEXTS)))  # one call each: the same bits
    # The base retriever ranks by cosine with the engine's query vector.
    query = np.array(reference_embedder.embed_queries([QUERY])[0])
    best = np.argsort(-(stored @ query), kind="stable")[:K]
    assert {d.id for d in pipeline[2].invoke(QUERY)} == {f"doc-{i}" for i in best}


def test_reranked_documents_carry_the_engine_scores(pipeline, reference_reranker):
    _, _, base, retriever = pipeline
    candidates = base.invoke(QUERY)
    expected = reference_reranker.score(QUERY, [d.page_content for d in candidates])
    best = sorted(range(len(candidates)), key=lambda i: -expected[i])[:3]
    out = retriever.invoke(QUERY)
    assert [d.id for d in out] == [candidates[i].id for i in best]
    assert [d.metadata["relevance_score"] for d in out] == [expected[i] for i in best]  # the same call: the same bits
    assert [d.metadata["n"] for d in out] == [candidates[i].metadata["n"] for i in best]


async def test_ainvoke_equals_invoke(pipeline):
    retriever = pipeline[3]
    assert await retriever.ainvoke(QUERY) == retriever.invoke(QUERY)
