"""Qwen3Reranker: scores equal the engine's, ordering, top_n, threshold, copies, rerank(), async, sharing, errors."""

from __future__ import annotations

import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.documents import Document
from pydantic import ValidationError

import qwen3_rag_components.engine.holder as holder_module
from qwen3_rag_components import Qwen3RerankEngine, RerankOptions, get_engine
from qwen3_rag_components.engine import shared_engine
from qwen3_rag_components.langchain import Qwen3Reranker

# The adapter makes the engine call the reference makes (the same texts in one call, the same options): the same
# pack layout, so the same bits (docs/fidelity.md, Reproducibility).
TOLERANCE = 0.0
QUERY = "what is dense retrieval?"
TEXTS = [
    "Dense retrieval encodes queries and passages into vectors and matches them by similarity.",
    "The recipe calls for two cups of flour and one egg.",
    "BM25 is a sparse lexical ranking function.",
    "Paris is the capital of France.",
    "A bi-encoder embeds the query and each passage separately.",
    "retrieval",
]


def documents() -> list[Document]:
    return [
        Document(text, id=f"doc-{i}", metadata={"source": f"s{i}", "tags": ["a", {"nested": i}]})
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture
def make_reranker(reranker_model: str):
    def make(**fields) -> Qwen3Reranker:
        return Qwen3Reranker(model=reranker_model, device="cpu", local_files_only=True, **fields)

    return make


@pytest.fixture(scope="module")
def expected(reference_reranker: Qwen3RerankEngine) -> list[float]:
    return reference_reranker.score(QUERY, TEXTS)


def test_documents_come_back_best_first_with_the_engine_scores(make_reranker, expected):
    out = make_reranker(top_n=None).compress_documents(documents(), QUERY)
    assert [doc.id for doc in out] == [f"doc-{i}" for i in sorted(range(len(TEXTS)), key=lambda i: -expected[i])]
    for doc in out:
        assert abs(doc.metadata["relevance_score"] - expected[int(doc.id.removeprefix("doc-"))]) <= TOLERANCE
    assert max(expected) - min(expected) > 0.05  # the tiny model tells the documents apart


def test_top_n_defaults_to_three(make_reranker, expected):
    best = sorted(range(len(TEXTS)), key=lambda i: -expected[i])
    assert [doc.id for doc in make_reranker().compress_documents(documents(), QUERY)] == [f"doc-{i}" for i in best[:3]]
    assert len(make_reranker(top_n=1).compress_documents(documents(), QUERY)) == 1
    assert len(make_reranker(top_n=100).compress_documents(documents(), QUERY)) == len(TEXTS)


def test_score_threshold_drops_lower_scores(make_reranker, expected):
    ranked = sorted(expected)
    threshold = (ranked[2] + ranked[3]) / 2  # between two scores, so equality can never be in doubt
    out = make_reranker(top_n=None, score_threshold=threshold).compress_documents(documents(), QUERY)
    assert {doc.id for doc in out} == {f"doc-{i}" for i, s in enumerate(expected) if s >= threshold}
    assert all(doc.metadata["relevance_score"] >= threshold for doc in out)
    assert make_reranker(score_threshold=1.01).compress_documents(documents(), QUERY) == []


def test_outputs_are_new_documents_with_deep_copied_metadata(make_reranker):
    inputs = documents()
    out = make_reranker(top_n=None).compress_documents(inputs, QUERY)
    by_id = {doc.id: doc for doc in inputs}
    for doc in out:
        original = by_id[doc.id]
        assert doc is not original and doc.page_content == original.page_content
        doc.metadata["tags"][1]["nested"] = "changed"
        doc.metadata["tags"].append("x")
    assert [doc.metadata for doc in inputs] == [doc.metadata for doc in documents()]  # inputs untouched
    assert all("relevance_score" not in doc.metadata for doc in inputs)


def test_rerank_returns_index_and_score_dicts_like_cohere(make_reranker, expected):
    reranker = make_reranker()
    mixed = [Document(TEXTS[0]), *TEXTS[1:]]  # Documents and plain strings
    results = reranker.rerank(mixed, QUERY)
    assert len(results) == 3 and all(set(r) == {"index", "relevance_score"} for r in results)
    assert all(isinstance(r["index"], int) and isinstance(r["relevance_score"], float) for r in results)
    assert [r["relevance_score"] for r in results] == sorted((r["relevance_score"] for r in results), reverse=True)
    every = reranker.rerank(TEXTS, QUERY, top_n=None)
    assert sorted(r["index"] for r in every) == list(range(len(TEXTS)))
    assert all(abs(r["relevance_score"] - expected[r["index"]]) <= TOLERANCE for r in every)
    assert reranker.rerank(TEXTS, QUERY, top_n=2) == every[:2]


def test_custom_instruction_reaches_the_engine(make_reranker, reference_reranker):
    instruction = "Find passages about cooking"
    out = make_reranker(top_n=None, instruction=instruction).rerank(TEXTS, QUERY)
    expected = reference_reranker.score(QUERY, TEXTS, instruction=instruction)
    assert all(abs(r["relevance_score"] - expected[r["index"]]) <= TOLERANCE for r in out)
    assert max(abs(a - b) for a, b in zip(expected, reference_reranker.score(QUERY, TEXTS), strict=True)) > 1e-4


def test_ties_keep_input_order(make_reranker):
    out = make_reranker(top_n=None).compress_documents([Document("same", id="x"), Document("same", id="y")], QUERY)
    assert [doc.id for doc in out] == ["x", "y"]


def test_empty_input_returns_nothing_without_loading_the_model():
    reranker = Qwen3Reranker(model="/does/not/exist", local_files_only=True)
    assert reranker.compress_documents([], QUERY) == []
    assert reranker.rerank([], QUERY) == []
    assert not reranker.holder.loaded
    assert reranker.last_meta.documents == 0 and reranker.last_meta.packs == 0  # recorded as in every adapter


async def test_async_equals_sync(make_reranker):
    reranker = make_reranker(top_n=4)
    sync = reranker.compress_documents(documents(), QUERY)
    assert await reranker.acompress_documents(documents(), QUERY) == sync
    assert await reranker.acompress_documents([], QUERY) == []


def test_instances_share_one_loaded_model(make_reranker, reranker_model):
    first, second = make_reranker(), make_reranker(top_n=1, instruction="Find code", max_docs_per_pack=2)
    assert first.holder.engine.model is second.holder.engine.model
    # The same shared cache the Haystack components load from.
    shared = get_engine(Qwen3RerankEngine, reranker_model, device="cpu", local_files_only=True)
    assert first.holder.engine.model is shared.model
    assert second.holder.engine.options == RerankOptions(instruction="Find code", max_docs_per_pack=2)


def test_last_meta_and_changed_fields(make_reranker):
    reranker = make_reranker(top_n=None)
    reranker.rerank(TEXTS, QUERY)
    meta = reranker.last_meta
    assert (meta.documents, meta.unique_documents, meta.packs, meta.device) == (len(TEXTS), len(TEXTS), 1, "cpu")
    small = reranker.model_copy(update={"max_docs_per_pack": 1})
    assert (
        small.holder.engine.options.max_docs_per_pack == 1 and reranker.holder.engine.options.max_docs_per_pack is None
    )
    small.rerank(TEXTS, QUERY)
    assert small.last_meta.packs == len(TEXTS) and reranker.last_meta is meta


def test_concurrent_first_use_loads_once(make_reranker, monkeypatch):
    calls = []

    def slow_shared_engine(*args, **kwargs):
        calls.append(args)
        time.sleep(0.05)
        return shared_engine(*args, **kwargs)

    monkeypatch.setattr(holder_module, "shared_engine", slow_shared_engine)
    reranker = make_reranker()
    barrier = threading.Barrier(4)

    def first_use(_):
        barrier.wait()
        return reranker.holder.engine

    with ThreadPoolExecutor(4) as pool:
        engines = list(pool.map(first_use, range(4)))
    assert len(calls) == 1 and all(engine is engines[0] for engine in engines)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"top_k": 3}, "Extra inputs are not permitted"),
        ({"top_n": 0}, "top_n=0 is invalid: use an int >= 1, or None"),
        ({"top_n": -2}, "top_n=-2 is invalid"),
        ({"max_length": 0}, "max_length=0 is invalid"),
        ({"max_tokens_per_pack": -1}, "max_tokens_per_pack=-1 is invalid"),
        ({"max_docs_per_pack": 0}, "max_docs_per_pack=0 is invalid"),
        ({"dtype": "int8"}, "dtype='int8' is not supported"),
    ],
)
def test_invalid_fields_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        Qwen3Reranker(**fields)


def test_bad_calls_say_what_to_do(make_reranker):
    reranker = make_reranker()
    with pytest.raises(ValueError, match="top_n=0 is invalid"):
        reranker.rerank(TEXTS, QUERY, top_n=0)
    with pytest.raises(TypeError, match="single string"):
        reranker.rerank("one document", QUERY)
    with pytest.raises(TypeError, match=r"documents\[1\] is str"):
        reranker.compress_documents([Document("a"), "b"], QUERY)


def test_defaults_and_secret_token():
    reranker = Qwen3Reranker(token="hf_secret")
    assert reranker.model == "Qwen/Qwen3-Reranker-0.6B" and reranker.top_n == 3 and reranker.max_length == 8192
    assert "hf_secret" not in repr(reranker) and reranker.token.get_secret_value() == "hf_secret"


def test_import_without_langchain_core_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "langchain_core" or m.startswith("qwen3_rag_components.langchain")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "langchain_core", None)  # makes `import langchain_core` fail
    with pytest.raises(ImportError, match=r'pip install "qwen3-rag-components\[langchain\]"'):
        import qwen3_rag_components.langchain  # noqa: F401
