"""Indexing and query pipelines on tiny checkpoints: results equal the engines', YAML round trip, async, allowlist."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml
from haystack import DeserializationError, Document, Pipeline
from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
from haystack.components.writers import DocumentWriter
from haystack.document_stores.in_memory import InMemoryDocumentStore
from haystack.document_stores.types import DuplicatePolicy

from qwen3_rag_components.haystack import Qwen3DocumentEmbedder, Qwen3Ranker, Qwen3TextEmbedder

from .conftest import CPU

# The adapter makes the engine call the reference makes (the same texts in one call, the same options): the same
# pack layout, so the same bits (docs/fidelity.md, Reproducibility).
TOLERANCE = 0.0
QUERY = "What is the capital of China?"


def indexing_pipeline(model: str, store: InMemoryDocumentStore) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component(
        "embedder", Qwen3DocumentEmbedder(model, device=CPU, meta_fields_to_embed=["title"], progress_bar=False)
    )
    pipeline.add_component("writer", DocumentWriter(store, policy=DuplicatePolicy.OVERWRITE))
    pipeline.connect("embedder.documents", "writer.documents")
    return pipeline


def query_pipeline(embedder_model: str, reranker_model: str, store: InMemoryDocumentStore) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("text_embedder", Qwen3TextEmbedder(embedder_model, device=CPU))
    pipeline.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=4))
    pipeline.add_component("ranker", Qwen3Ranker(reranker_model, device=CPU, top_k=3))
    pipeline.connect("text_embedder.embedding", "retriever.query_embedding")
    pipeline.connect("retriever.documents", "ranker.documents")
    return pipeline


def query_inputs(query: str = QUERY) -> dict:
    return {"text_embedder": {"text": query}, "ranker": {"query": query}}


def scored(documents: list[Document]) -> list[tuple[str, float]]:
    return [(doc.id, doc.score) for doc in documents]


def assert_same_pipeline(loaded: Pipeline, original: Pipeline) -> None:
    """Same components and parameters; Haystack may list the connections in another order."""
    loaded_dict, original_dict = loaded.to_dict(), original.to_dict()
    assert loaded_dict["components"] == original_dict["components"]
    connections = [
        sorted(d["connections"], key=lambda c: (c["sender"], c["receiver"])) for d in (loaded_dict, original_dict)
    ]
    assert connections[0] == connections[1]


@pytest.fixture
def indexed(embedder_model, documents) -> InMemoryDocumentStore:
    store = InMemoryDocumentStore(index=f"test-{uuid.uuid4()}")
    indexing_pipeline(embedder_model, store).run({"embedder": {"documents": documents}})
    return store


def test_indexing_pipeline_stores_the_engine_vectors(embedder_model, reference_embedder, documents):
    store = InMemoryDocumentStore(index=f"test-{uuid.uuid4()}")
    result = indexing_pipeline(embedder_model, store).run({"embedder": {"documents": documents}})
    # The embedder's `meta` output is not connected, so the pipeline returns it (as for Haystack's own embedders).
    assert result["writer"] == {"documents_written": len(documents)}
    assert set(result) == {"writer", "embedder"} and set(result["embedder"]) == {"meta"}
    assert result["embedder"]["meta"]["documents"] == len(documents)
    texts = ["\n".join([*([d.meta["title"]] if d.meta.get("title") else []), d.content]) for d in documents]
    expected = dict(zip((d.id for d in documents), reference_embedder.encode(texts).embeddings, strict=True))
    stored = store.filter_documents()
    assert sorted(d.id for d in stored) == sorted(expected)
    for doc in stored:
        assert np.abs(np.array(doc.embedding) - expected[doc.id]).max() <= TOLERANCE


def test_query_pipeline_equals_the_engines(
    embedder_model, reranker_model, reference_embedder, reference_reranker, indexed, documents
):
    result = query_pipeline(embedder_model, reranker_model, indexed).run(query_inputs())
    ranked = result["ranker"]["documents"]
    assert len(ranked) == 3

    # Retrieval: the 4 documents nearest to the query vector (dot product of normalised vectors).
    query_vector = reference_embedder.encode([QUERY], is_query=True).embeddings[0]
    stored = indexed.filter_documents()
    similarity = {d.id: float(np.dot(query_vector, d.embedding)) for d in stored}
    retrieved = sorted(similarity, key=similarity.get, reverse=True)[:4]
    by_id = {d.id: d for d in documents}

    # Ranking: the engine's P(yes) for those 4 documents, best 3 kept.
    scores = reference_reranker.score(QUERY, [by_id[i].content for i in retrieved])
    expected = sorted(zip(retrieved, scores, strict=True), key=lambda pair: pair[1], reverse=True)[:3]
    assert [doc.id for doc in ranked] == [i for i, _ in expected]
    for doc, (_, score) in zip(ranked, expected, strict=True):
        assert abs(doc.score - score) <= TOLERANCE


def test_yaml_round_trip_of_both_pipelines(embedder_model, reranker_model, indexed, documents):
    indexing = indexing_pipeline(embedder_model, indexed)
    text = indexing.dumps()
    assert "qwen3_rag_components.haystack.document_embedder.Qwen3DocumentEmbedder" in text
    loaded = Pipeline.loads(text)
    assert_same_pipeline(loaded, indexing)
    inputs = {"embedder": {"documents": documents}}
    before = indexing.run(inputs, include_outputs_from={"embedder"})["embedder"]["documents"]
    after = loaded.run(inputs, include_outputs_from={"embedder"})["embedder"]["documents"]
    assert [d.embedding for d in after] == [d.embedding for d in before]

    query = query_pipeline(embedder_model, reranker_model, indexed)
    text = query.dumps()
    assert "qwen3_rag_components.haystack.ranker.Qwen3Ranker" in text
    loaded = Pipeline.loads(text)
    assert_same_pipeline(loaded, query)
    assert scored(loaded.run(query_inputs())["ranker"]["documents"]) == scored(
        query.run(query_inputs())["ranker"]["documents"]
    )


@pytest.mark.asyncio
async def test_pipeline_run_async_equals_run(embedder_model, reranker_model, indexed):
    pipeline = query_pipeline(embedder_model, reranker_model, indexed)
    sync = pipeline.run(query_inputs())
    result = await pipeline.run_async(query_inputs())
    assert scored(result["ranker"]["documents"]) == scored(sync["ranker"]["documents"])


def test_allowlist_is_narrow():
    """Importing the package allows its own modules only, not the rest of qwen3_rag_components."""
    text = textwrap.dedent(
        """
        components:
          engine:
            type: qwen3_rag_components.engine.cache.Anything
            init_parameters: {}
        connections: []
        """
    )
    with pytest.raises(DeserializationError, match=r"qwen3_rag_components\.engine\.cache"):
        Pipeline.loads(text)


def test_loading_in_a_fresh_process(reranker_model, tmp_path):
    """Without importing the package first, Haystack refuses the module until the user allows it."""
    pipeline = Pipeline()
    pipeline.add_component("ranker", Qwen3Ranker(reranker_model, device=CPU, top_k=2))
    path = tmp_path / "ranker.yaml"
    path.write_text(pipeline.dumps())
    script = textwrap.dedent(
        f"""
        import os
        from haystack import DeserializationError, Pipeline

        text = open({str(path)!r}).read()
        try:
            Pipeline.loads(text)
        except DeserializationError as error:
            assert "qwen3_rag_components.haystack.ranker" in str(error), error
        else:
            raise AssertionError("loaded without being allowed")
        Pipeline.loads(text, allowed_modules=["qwen3_rag_components.haystack"])
        os.environ["HAYSTACK_DESERIALIZATION_ALLOWLIST"] = "qwen3_rag_components.haystack"
        loaded = Pipeline.loads(text)
        assert loaded.get_component("ranker").top_k == 2
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "HAYSTACK_DESERIALIZATION_ALLOWLIST"}
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]


def test_import_without_haystack_names_the_extra(monkeypatch):
    for name in [
        m for m in sys.modules if m == "haystack" or m.startswith(("haystack.", "qwen3_rag_components.haystack"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "haystack", None)
    with pytest.raises(ImportError, match=r'pip install "qwen3-rag-components\[haystack\]"'):
        import qwen3_rag_components.haystack  # noqa: F401


SAVED_BY_0_1 = Path(__file__).parent / "data" / "pipeline-0.1.0.yaml"  # written by version 0.1.0's Pipeline.dumps()


def test_a_pipeline_saved_by_0_1_loads_and_runs_unchanged(
    embedder_model, reranker_model, reference_embedder, reference_reranker, documents
):
    text = SAVED_BY_0_1.read_text().replace("EMBEDDER_PATH", embedder_model).replace("RERANKER_PATH", reranker_model)
    pipeline = Pipeline.loads(text)
    saved = yaml.safe_load(text)["components"]
    for name in ("text_embedder", "doc_embedder"):  # options added since 0.1 save back at their defaults
        saved[name]["init_parameters"] |= {"precision": "float32", "ranges": None}
    for name in ("text_embedder", "doc_embedder", "ranker"):
        saved[name]["init_parameters"]["quantization"] = None
    saved["ranker"]["init_parameters"] |= {"max_tokens_per_doc": None, "chunk_overlap": 0}
    assert pipeline.to_dict()["components"] == saved  # saves back the same, plus the new defaults

    # Every saved option reaches the engine: compare with the engine called with the same options.
    doc_embedder = pipeline.get_component("doc_embedder")
    embedded = doc_embedder.run(documents)["documents"]
    doc_texts = [" | ".join([*([d.meta["title"]] if d.meta.get("title") else []), d.content]) for d in documents]
    engine = reference_embedder.with_options(max_length=512, max_tokens_per_pack=256)
    expected = engine.encode(doc_texts, dimensions=16).embeddings
    assert np.abs(np.array([d.embedding for d in embedded]) - expected).max() <= 1e-5
    pipeline.get_component("retriever").document_store.write_documents(embedded)

    inputs = {"text_embedder": {"text": QUERY}, "ranker": {"query": QUERY}, "doc_embedder": {"documents": documents}}
    result = pipeline.run(inputs)
    ranked = result["ranker"]["documents"]
    assert len(ranked) == 3 and result["ranker"]["meta"]["unique_documents"] == 4  # retriever top_k=4, ranker top_k=3
    by_id = {d.id: d for d in documents}
    texts = [
        ": ".join([*([by_id[d.id].meta["title"]] if by_id[d.id].meta.get("title") else []), d.content]) for d in ranked
    ]
    logits = reference_reranker.with_options(max_length=1024).score(
        QUERY, texts, instruction="Judge relevance", return_logits=True
    )
    assert max(abs(d.score - s) for d, s in zip(ranked, logits, strict=True)) <= 1e-5  # scale_score=False: logits
    assert [d.score for d in ranked] == sorted((d.score for d in ranked), reverse=True)
