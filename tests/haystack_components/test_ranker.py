"""Qwen3Ranker: serialisation, defaults, errors, and scores equal to the engine's on a tiny checkpoint."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
from haystack import Document
from haystack.utils import ComponentDevice, Secret

import qwen3_rag_components.engine.cache as engine_cache
from qwen3_rag_components import LoadSpec, Qwen3RerankEngine
from qwen3_rag_components.haystack import Qwen3Ranker

from .conftest import CPU

# The adapter makes the engine call the reference makes (the same texts in one call, the same options): the same
# pack layout, so the same bits (docs/fidelity.md, Reproducibility).
TOLERANCE = 0.0
QUERY = "What is the capital of China?"
TYPE = "qwen3_rag_components.haystack.ranker.Qwen3Ranker"
DEFAULT_TOKEN = {"type": "env_var", "env_vars": ["HF_API_TOKEN", "HF_TOKEN"], "strict": False}


@pytest.fixture
def ranker(reranker_model: str) -> Qwen3Ranker:
    return Qwen3Ranker(reranker_model, device=CPU)


def expected_texts(documents: list[Document], fields: Sequence[str] = (), separator: str = "\n") -> list[str]:
    texts = []
    for doc in documents:
        values = [str(doc.meta[f]) for f in fields if doc.meta.get(f) is not None]
        texts.append(separator.join([*values, doc.content or ""]))
    return texts


def assert_scores(result: list[Document], expected: dict[str, float]) -> None:
    """``result`` holds exactly the ids of ``expected``, each with its expected score, sorted by score."""
    assert {doc.id: doc.score for doc in result}.keys() == expected.keys()
    for doc in result:
        assert abs(doc.score - expected[doc.id]) <= TOLERANCE
    assert [doc.score for doc in result] == sorted((doc.score for doc in result), reverse=True)


# ---- serialisation and defaults (no model) --------------------------------------------------------------------


def test_to_dict_defaults():
    assert Qwen3Ranker().to_dict() == {
        "type": TYPE,
        "init_parameters": {
            "model": "Qwen/Qwen3-Reranker-0.6B",
            "device": None,
            "dtype": None,
            "quantization": None,
            "token": DEFAULT_TOKEN,
            "local_files_only": False,
            "revision": None,
            "top_k": 10,
            "instruction": None,
            "scale_score": True,
            "score_threshold": None,
            "meta_fields_to_embed": [],
            "embedding_separator": "\n",
            "max_length": 8192,
            "max_tokens_per_pack": 8192,
            "max_docs_per_pack": None,
            "max_tokens_per_doc": None,
            "chunk_overlap": 0,
        },
    }


def custom_ranker() -> Qwen3Ranker:
    return Qwen3Ranker(
        "my/reranker",
        device=ComponentDevice.from_str("cuda:1"),
        dtype="bfloat16",
        token=Secret.from_env_var("MY_TOKEN"),
        local_files_only=True,
        revision="v2",
        top_k=3,
        instruction="Find the passage about the city",
        scale_score=False,
        score_threshold=0.25,
        meta_fields_to_embed=["title", "year"],
        embedding_separator=" | ",
        max_length=512,
        max_tokens_per_pack=2048,
        max_docs_per_pack=16,
        max_tokens_per_doc=256,
        chunk_overlap=32,
    )


CUSTOM_DICT = {
    "type": TYPE,
    "init_parameters": {
        "model": "my/reranker",
        "device": {"type": "single", "device": "cuda:1"},
        "dtype": "bfloat16",
        "quantization": None,
        "token": {"type": "env_var", "env_vars": ["MY_TOKEN"], "strict": True},
        "local_files_only": True,
        "revision": "v2",
        "top_k": 3,
        "instruction": "Find the passage about the city",
        "scale_score": False,
        "score_threshold": 0.25,
        "meta_fields_to_embed": ["title", "year"],
        "embedding_separator": " | ",
        "max_length": 512,
        "max_tokens_per_pack": 2048,
        "max_docs_per_pack": 16,
        "max_tokens_per_doc": 256,
        "chunk_overlap": 32,
    },
}


def test_to_dict_custom():
    assert custom_ranker().to_dict() == CUSTOM_DICT


def test_from_dict_round_trip_leaves_input_unchanged():
    data = {"type": TYPE, "init_parameters": dict(CUSTOM_DICT["init_parameters"])}
    ranker = Qwen3Ranker.from_dict(data)
    assert data == CUSTOM_DICT
    assert ranker.device == ComponentDevice.from_str("cuda:1")
    assert ranker.token == Secret.from_env_var("MY_TOKEN")
    assert ranker.to_dict() == CUSTOM_DICT
    assert not ranker.holder.loaded  # nothing loaded


def test_from_dict_with_missing_parameters_uses_defaults():
    ranker = Qwen3Ranker.from_dict({"type": TYPE, "init_parameters": {"model": "m", "token": None}})
    assert (ranker.model, ranker.token, ranker.device, ranker.top_k, ranker.scale_score) == ("m", None, None, 10, True)


def test_model_accepts_a_path(tmp_path):
    assert Qwen3Ranker(tmp_path).model == str(tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"top_k": 0}, ValueError, "top_k=0 is invalid; it must be a positive int"),
        ({"top_k": -3}, ValueError, "top_k=-3 is invalid"),
        ({"max_length": 0}, ValueError, "max_length=0"),
        ({"max_tokens_per_pack": 0}, ValueError, "max_tokens_per_pack=0"),
        ({"max_docs_per_pack": 0}, ValueError, "max_docs_per_pack=0"),
        ({"max_tokens_per_doc": 0}, ValueError, "max_tokens_per_doc=0"),
        ({"max_tokens_per_doc": 8, "chunk_overlap": 8}, ValueError, "overlap=8 is invalid"),
        ({"chunk_overlap": 4}, ValueError, "chunk_overlap applies with max_tokens_per_doc only"),
        ({"dtype": "int8"}, ValueError, "dtype='int8' is not supported"),
        ({"quantization": "int4"}, ValueError, r"quantization='int4' is not supported; use one of \['int8'\]"),
        ({"device": "cpu"}, ValueError, "Must either be None or ComponentDevice"),
        ({"model": None}, TypeError, "model must be"),
    ],
)
def test_init_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        Qwen3Ranker(**kwargs)


def test_run_errors_without_loading():
    ranker = Qwen3Ranker("does/not-exist", local_files_only=True)
    with pytest.raises(ValueError, match="top_k=0 is invalid; it must be a positive int"):
        ranker.run(QUERY, [Document(content="x")], top_k=0)
    with pytest.raises(TypeError, match="Qwen3Ranker expects a list of Documents as input, got str"):
        ranker.run(QUERY, "a document")
    with pytest.raises(TypeError, match="got list with a str entry"):
        ranker.run(QUERY, [Document(content="x"), "y"])
    assert not ranker.holder.loaded


def test_empty_input_returns_early_without_loading():
    ranker = Qwen3Ranker("does/not-exist", local_files_only=True)
    result = ranker.run(QUERY, [])
    assert result["documents"] == []
    assert (result["meta"]["documents"], result["meta"]["packs"], result["meta"]["device"]) == (0, 0, "cpu")
    assert not ranker.holder.loaded


@pytest.mark.asyncio
async def test_empty_input_async():
    ranker = Qwen3Ranker("does/not-exist", local_files_only=True)
    assert (await ranker.run_async(QUERY, []))["documents"] == []
    assert not ranker.holder.loaded


# ---- on the tiny checkpoint -----------------------------------------------------------------------------------


def test_scores_equal_engine(ranker, reference_reranker, documents):
    result = ranker.run(QUERY, documents)["documents"]
    expected = reference_reranker.score(QUERY, expected_texts(documents))
    assert_scores(result, {doc.id: s for doc, s in zip(documents, expected, strict=True)})
    assert all(0.0 <= doc.score <= 1.0 for doc in result)
    assert all(doc.score is None for doc in documents)  # the inputs are not modified: the output holds copies
    assert {d.id: d.content for d in result} == {d.id: d.content for d in documents}


def test_int8_saves_loads_and_scores_as_the_int8_engine(reranker_model, documents):
    ranker = Qwen3Ranker(reranker_model, device=CPU, quantization="int8", top_k=len(documents))
    data = ranker.to_dict()
    assert data["init_parameters"]["quantization"] == "int8"
    loaded = Qwen3Ranker.from_dict(data)
    result = loaded.run(QUERY, documents)
    engine = Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu", quantization="int8")
    expected = engine.score(QUERY, expected_texts(documents))
    assert_scores(result["documents"], {doc.id: s for doc, s in zip(documents, expected, strict=True)})
    assert result["meta"]["quantization"] == "int8"


def test_logits_when_scale_score_is_false(reranker_model, reference_reranker, documents):
    ranker = Qwen3Ranker(reranker_model, device=CPU, scale_score=False)
    result = ranker.run(QUERY, documents)["documents"]
    logits = reference_reranker.score(QUERY, expected_texts(documents), return_logits=True)
    assert_scores(result, {doc.id: s for doc, s in zip(documents, logits, strict=True)})
    probabilities = {d.id: d.score for d in ranker.run(QUERY, documents, scale_score=True)["documents"]}
    for doc in result:
        assert abs(1 / (1 + math.exp(-doc.score)) - probabilities[doc.id]) <= 1e-6  # float64 sigmoid vs fp32


def test_run_overrides_use_is_none(reranker_model, reference_reranker, documents):
    """``scale_score=False`` and ``score_threshold=0.0`` at run time override truthy init values."""
    best = max(reference_reranker.score(QUERY, expected_texts(documents)))
    ranker = Qwen3Ranker(reranker_model, device=CPU, scale_score=True, score_threshold=best + 1e-3, top_k=2)
    assert ranker.run(QUERY, documents)["documents"] == []
    everything = ranker.run(QUERY, documents, score_threshold=0.0, top_k=len(documents))["documents"]
    assert len(everything) == len(documents)  # P(yes) >= 0 always
    logits = ranker.run(QUERY, documents, scale_score=False, score_threshold=-1e9, top_k=100)["documents"]
    expected = reference_reranker.score(QUERY, expected_texts(documents), return_logits=True)
    assert_scores(logits, {doc.id: s for doc, s in zip(documents, expected, strict=True)})


def test_top_k_and_score_threshold(ranker, documents):
    ranked = ranker.run(QUERY, documents)["documents"]
    assert [d.id for d in ranker.run(QUERY, documents, top_k=2)["documents"]] == [d.id for d in ranked[:2]]
    threshold = ranked[2].score
    kept = ranker.run(QUERY, documents, score_threshold=threshold)["documents"]
    assert [d.id for d in kept] == [d.id for d in ranked if d.score >= threshold]
    assert len(kept) == 3
    ranker.top_k = 1
    assert len(ranker.run(QUERY, documents)["documents"]) == 1


def test_duplicates_are_scored_once_and_returned_once(ranker, documents, monkeypatch):
    low = Document(id="dup", content="Beijing is the capital of China.", meta={"copy": "low"}, score=0.1)
    high = Document(id="dup", content="Beijing is the capital of China.", meta={"copy": "high"}, score=0.9)
    calls = []
    engine = ranker.holder.engine
    plan = engine.plan
    monkeypatch.setattr(engine, "plan", lambda requests, *a: calls.append(requests[0][1]) or plan(requests, *a))
    result = ranker.run(QUERY, [low, *documents, high, documents[0]])["documents"]
    assert [len(texts) for texts in calls] == [len(documents) + 1]
    assert sorted(d.id for d in result) == sorted([*(d.id for d in documents), "dup"])
    assert next(d for d in result if d.id == "dup").meta == {"copy": "high"}  # the highest incoming score wins


def test_meta_fields_and_content_none(reranker_model, reference_reranker, documents):
    documents = [*documents, Document(content=None, meta={"title": "Only a title"}), Document(content=None)]
    ranker = Qwen3Ranker(reranker_model, device=CPU, meta_fields_to_embed=["title", "year"], top_k=100)
    result = ranker.run(QUERY, documents)["documents"]
    texts = expected_texts(documents, ["title", "year"])
    assert texts[0] == "China\n2024\nBeijing is the capital of China."
    assert texts[2] == "Gravity pulls objects toward each other."  # a None meta value is skipped
    assert texts[4] == "France\n0\nParis is known for the Eiffel tower."  # a falsy one is kept
    assert texts[-2:] == ["Only a title\n", ""]
    expected = reference_reranker.score(QUERY, texts)
    assert_scores(result, {doc.id: s for doc, s in zip(documents, expected, strict=True)})


def test_instruction_at_init_and_per_run(reranker_model, reference_reranker, documents):
    texts = expected_texts(documents)
    custom = "Find the passage that names a capital city"
    ranker = Qwen3Ranker(reranker_model, device=CPU, instruction=custom)
    expected = reference_reranker.score(QUERY, texts, instruction=custom)
    assert_scores(
        ranker.run(QUERY, documents)["documents"], {d.id: s for d, s in zip(documents, expected, strict=True)}
    )
    other = "Judge the topic"
    expected = reference_reranker.score(QUERY, texts, instruction=other)
    assert_scores(
        ranker.run(QUERY, documents, instruction=other)["documents"],
        {d.id: s for d, s in zip(documents, expected, strict=True)},
    )
    default = reference_reranker.score(QUERY, texts)
    assert max(abs(a - b) for a, b in zip(default, expected, strict=True)) > 1e-4  # the instruction reaches the model


def test_small_packs_give_the_same_scores(reranker_model, ranker, documents):
    small = Qwen3Ranker(reranker_model, device=CPU, max_tokens_per_pack=64, max_docs_per_pack=2)
    big = {d.id: d.score for d in ranker.run(QUERY, documents)["documents"]}
    for doc in small.run(QUERY, documents)["documents"]:
        assert abs(doc.score - big[doc.id]) <= 1e-5


@pytest.mark.asyncio
async def test_async_equals_sync(ranker, documents):
    kwargs = {"top_k": 4, "scale_score": False, "score_threshold": -100.0, "instruction": "Judge relevance"}
    sync = ranker.run(QUERY, documents, **kwargs)["documents"]
    assert (await ranker.run_async(QUERY, documents, **kwargs))["documents"] == sync


@pytest.mark.asyncio
async def test_warm_up_async_loads_once(reranker_model):
    ranker = Qwen3Ranker(reranker_model, device=CPU)
    await ranker.warm_up_async()
    engine = ranker.holder.engine
    assert ranker.holder.loaded
    ranker.warm_up()
    assert ranker.holder.engine is engine


def test_rankers_with_the_same_model_share_one_engine(reranker_model):
    first = Qwen3Ranker(reranker_model, device=CPU, top_k=3)
    second = Qwen3Ranker(reranker_model, device=CPU, dtype="float32", max_length=1024, instruction="Other task")
    first.warm_up()
    second.warm_up()
    loaded = LoadSpec(reranker_model, device="cpu", dtype="float32").resolved()  # dtype None resolves to fp32
    assert sum(key == (Qwen3RerankEngine, loaded) for key in engine_cache._engines) == 1
    # One load (here or in an earlier test); the options are applied on copies sharing it.
    first_engine, second_engine = first.holder.engine, second.holder.engine
    assert second_engine.model is first_engine.model and second_engine.head is first_engine.head
    assert (first_engine.options.max_length, second_engine.options.max_length) == (8192, 1024)
    assert second_engine.options.instruction == "Other task"
