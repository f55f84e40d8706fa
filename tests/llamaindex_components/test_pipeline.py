"""VectorStoreIndex over Qwen3Embedding, and a query engine (MockLLM) with Qwen3Rerank as node postprocessor."""

from __future__ import annotations

import numpy as np
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.llms import MockLLM
from llama_index.core.schema import MetadataMode, TextNode

from qwen3_rag_components.llamaindex import Qwen3Embedding, Qwen3Rerank

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


def nodes() -> list[TextNode]:
    """Nodes whose embedded text carries one metadata key ("source") and not the other ("n")."""
    return [
        TextNode(text=t, id_=f"doc-{i}", metadata={"n": i, "source": f"s{i}"}, excluded_embed_metadata_keys=["n"])
        for i, t in enumerate(TEXTS)
    ]


def embedded_texts(items) -> list[str]:
    return [item.get_content(metadata_mode=MetadataMode.EMBED) for item in items]


@pytest.fixture
def embed_model(embedder_model: str) -> Qwen3Embedding:
    return Qwen3Embedding(model=embedder_model, device="cpu", local_files_only=True)


@pytest.fixture
def reranker(reranker_model: str) -> Qwen3Rerank:
    return Qwen3Rerank(model=reranker_model, device="cpu", local_files_only=True, top_n=3)


@pytest.fixture
def index(embed_model: Qwen3Embedding) -> VectorStoreIndex:
    return VectorStoreIndex(nodes(), embed_model=embed_model)


def test_index_vectors_are_the_engine_vectors(index, reference_embedder):
    assert embedded_texts(nodes())[0] == "source: s0\n\n" + TEXTS[0]  # LlamaIndex's embed text, metadata included
    stored = np.array([index.vector_store.get(f"doc-{i}") for i in range(len(TEXTS))])
    # One engine call for the whole batch, as the reference makes: the same bits.
    assert np.array_equal(stored, np.array(reference_embedder.embed_documents(embedded_texts(nodes()))))
    # The retriever ranks by cosine with the engine's query vector (instruction applied).
    query = np.array(reference_embedder.embed_queries([QUERY])[0])
    similarities = stored @ query
    best = np.argsort(-similarities, kind="stable")[:K]
    retrieved = index.as_retriever(similarity_top_k=K).retrieve(QUERY)
    assert [item.node.node_id for item in retrieved] == [f"doc-{i}" for i in best]
    assert np.allclose([item.score for item in retrieved], similarities[best], atol=1e-6)


def test_query_engine_reranks_with_the_engine_scores(index, reranker, reference_reranker):
    candidates = index.as_retriever(similarity_top_k=K).retrieve(QUERY)
    expected = reference_reranker.score(QUERY, embedded_texts(c.node for c in candidates))
    best = sorted(range(K), key=lambda i: -expected[i])[:3]
    query_engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=K, node_postprocessors=[reranker])
    response = query_engine.query(QUERY)
    out = response.source_nodes
    assert [item.node.node_id for item in out] == [candidates[i].node.node_id for i in best]
    assert [item.score for item in out] == [expected[i] for i in best]  # the same call: the same bits
    assert [item.node.metadata for item in out] == [candidates[i].node.metadata for i in best]
    assert max(expected) - min(expected) > 0.01  # the tiny model tells the nodes apart
    assert reranker.last_meta.documents == K


@pytest.mark.asyncio
async def test_aquery_equals_query(index, reranker):
    query_engine = index.as_query_engine(llm=MockLLM(), similarity_top_k=K, node_postprocessors=[reranker])
    sync = query_engine.query(QUERY).source_nodes
    out = (await query_engine.aquery(QUERY)).source_nodes
    assert [(item.node.node_id, item.score) for item in out] == [(item.node.node_id, item.score) for item in sync]


def test_async_index_build_equals_sync(embed_model, index):
    async_index = VectorStoreIndex(nodes(), embed_model=embed_model, use_async=True)
    for i in range(len(TEXTS)):
        assert async_index.vector_store.get(f"doc-{i}") == index.vector_store.get(f"doc-{i}")


def test_ingestion_pipeline_sets_node_embeddings(embed_model, reference_embedder):
    out = IngestionPipeline(transformations=[embed_model]).run(nodes=nodes())
    assert [node.node_id for node in out] == [f"doc-{i}" for i in range(len(TEXTS))]
    assert [node.metadata for node in out] == [node.metadata for node in nodes()]
    assert [node.embedding for node in out] == reference_embedder.embed_documents(embedded_texts(nodes()))
