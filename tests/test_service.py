"""The service layer under every adapter: ordering, empty input, truncation refusal, admission, typed errors."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen3_rag_components import EmbedOptions, LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, RerankOptions
from qwen3_rag_components.engine import EngineHolder
from qwen3_rag_components.engine.errors import InvalidParameter
from qwen3_rag_components.engine.service import (
    Embedder,
    Reranker,
    TextsTooLong,
    ranked_order,
    score_requests_async,
)
from qwen3_rag_components.testing.oracle import official_rerank_scores

QUERY = "what is dense retrieval?"
DOCUMENTS = [
    "Dense retrieval embeds queries and passages.",
    "Gravity pulls.",
    "A passage about rivers.",
    "Gravity pulls.",
]
TOLERANCE = 1e-5


@pytest.fixture
def reranker(reranker_path) -> Reranker:
    return Reranker(EngineHolder(Qwen3RerankEngine, LoadSpec(str(reranker_path), "cpu"), RerankOptions()))


@pytest.fixture
def embedder(embedder_model: str) -> Embedder:
    return Embedder(EngineHolder(Qwen3EmbedEngine, LoadSpec(embedder_model, "cpu"), EmbedOptions()))


def nowhere(engine_class: type, options: object) -> EngineHolder:
    return EngineHolder(engine_class, LoadSpec("/does/not/exist", "cpu", local_files_only=True), options)


@given(
    scores=st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]) | st.floats(-5, 5), max_size=30),
    top_k=st.none() | st.integers(1, 40),
    threshold=st.none() | st.floats(-5, 5),
)
def test_ranked_order_is_a_stable_best_first_cut(scores, top_k, threshold):
    order = ranked_order(scores, top_k, threshold)
    kept = [i for i in range(len(scores)) if threshold is None or scores[i] >= threshold]
    assert len(order) == min(len(kept), top_k or len(kept)) and set(order) <= set(kept)
    for first, second in itertools.pairwise(order):  # best first; ties keep the input order
        assert scores[first] > scores[second] or (scores[first] == scores[second] and first < second)
    if top_k is None or top_k >= len(kept):
        assert sorted(order) == kept
    else:  # nothing left out scores above what was kept
        assert all(scores[i] <= scores[order[-1]] for i in set(kept) - set(order))


def test_rank_gives_the_official_scores_and_their_order(reranker, official_reranker):
    ranking = reranker.rank(QUERY, DOCUMENTS, top_k=2)
    expected = official_rerank_scores(*official_reranker, QUERY, DOCUMENTS)
    assert max(abs(a - b) for a, b in zip(ranking.scores, expected, strict=True)) <= TOLERANCE
    assert ranking.order == sorted(range(len(DOCUMENTS)), key=lambda i: -ranking.scores[i])[:2]
    assert ranking.ranked() == [(i, ranking.scores[i]) for i in ranking.order]
    assert reranker.holder.last_meta is ranking.meta and ranking.meta.unique_documents == 3


def test_arank_equals_rank(reranker):
    threshold = sorted(reranker.rank(QUERY, DOCUMENTS, return_logits=True).scores)[1]
    sync = reranker.rank(QUERY, DOCUMENTS, threshold=threshold, return_logits=True)
    awaited = asyncio.run(reranker.arank(QUERY, DOCUMENTS, threshold=threshold, return_logits=True))
    assert awaited.scores == sync.scores and awaited.order == sync.order
    assert all(sync.scores[i] >= threshold for i in sync.order) and len(sync.order) == len(DOCUMENTS) - 1


def test_empty_input_answers_without_loading():
    reranker = Reranker(nowhere(Qwen3RerankEngine, RerankOptions()))
    embedder = Embedder(nowhere(Qwen3EmbedEngine, EmbedOptions(dimensions=8)))
    ranking = reranker.rank(QUERY, [])
    assert (ranking.scores, ranking.order, ranking.meta.packs) == ([], [], 0)
    assert asyncio.run(reranker.arank(QUERY, [])).order == []
    result = embedder.embed([])
    assert result.embeddings.shape == (0, 8) and result.meta.documents == 0
    assert asyncio.run(embedder.aembed([], kind="queries")).embeddings.shape == (0, 8)
    assert not reranker.holder.loaded and not embedder.holder.loaded


@pytest.mark.parametrize(
    ("call", "param", "message"),
    [
        (lambda r: r.rank(QUERY, ["a"], top_k=0), "top_k", "top_k=0 is invalid"),
        (lambda r: r.rank(QUERY, ["a"], top_k=True), "top_k", "top_k=True is invalid"),
        (lambda r: r.rank(QUERY, ["a"], threshold="0.5"), "threshold", "threshold='0.5' is invalid"),
    ],
)
def test_bad_values_are_one_typed_error_before_a_load(call, param, message):
    reranker = Reranker(nowhere(Qwen3RerankEngine, RerankOptions()))
    with pytest.raises(InvalidParameter, match=message) as raised:
        call(reranker)
    assert raised.value.param == param and isinstance(raised.value, ValueError)
    assert not reranker.holder.loaded


def test_engine_range_errors_name_their_parameter(embedder):
    with pytest.raises(InvalidParameter) as raised:
        embedder.embed(["a"], dimensions=10_000)
    assert raised.value.param == "dimensions"
    with pytest.raises(InvalidParameter) as raised:
        embedder.embed(["a"], kind="passages")
    assert raised.value.param == "kind" and "'documents'" in raised.value.message
    with pytest.raises(InvalidParameter) as raised:
        RerankOptions(max_tokens_per_pack=0)
    assert raised.value.param == "max_tokens_per_pack"


def test_truncation_refusal_comes_before_any_pack(reranker_model, embedder_model):
    long = "word " * 200
    texts = ["short", long, long]
    spec = {Reranker: LoadSpec(reranker_model, "cpu"), Embedder: LoadSpec(embedder_model, "cpu")}
    services = [
        Reranker(EngineHolder(Qwen3RerankEngine, spec[Reranker], RerankOptions(max_length=96))),
        Embedder(EngineHolder(Qwen3EmbedEngine, spec[Embedder], EmbedOptions(max_length=64))),
    ]
    for service in services:
        arguments = (QUERY, texts) if isinstance(service, Reranker) else (texts,)
        call = functools.partial(service.rank if isinstance(service, Reranker) else service.embed, *arguments)
        scheduler = service.holder.engine.scheduler
        packs = scheduler.packs_run
        with pytest.raises(TextsTooLong, match="2 of the 3") as raised:
            call(truncate=False)
        assert raised.value.count == 2 and scheduler.packs_run == packs
        call()  # truncate=True: the official end-cut
        assert scheduler.packs_run > packs


def test_admit_sees_the_planned_tokens_and_can_refuse_before_any_pack(reranker):
    engine = reranker.holder.engine
    seen: list[int] = []

    @contextlib.contextmanager
    def admit(tokens: int):
        seen.append(tokens)
        yield

    plan = engine.plan([(QUERY, DOCUMENTS)])
    reranker.rank(QUERY, DOCUMENTS, admit=admit)
    assert seen == [plan.job.tokens] and plan.job.tokens == sum(map(len, plan.job.items)) + len(plan.job.prefixes[0])

    @contextlib.contextmanager
    def refuse(tokens: int):
        raise RuntimeError(f"overloaded at {tokens}")
        yield

    packs = engine.scheduler.packs_run
    with pytest.raises(RuntimeError, match="overloaded"):
        asyncio.run(reranker.arank(QUERY, DOCUMENTS, admit=refuse))
    assert engine.scheduler.packs_run == packs


def test_embed_kinds_equal_the_engine(embedder, reference_embedder):
    texts = ["dense retrieval", "gravity", "dense retrieval"]
    documents = embedder.embed(texts)
    queries = asyncio.run(embedder.aembed(texts, kind="queries", dimensions=16))
    assert np.allclose(documents.embeddings, reference_embedder.encode(texts).embeddings, atol=1e-6)
    expected = reference_embedder.encode(texts, is_query=True, dimensions=16).embeddings
    assert queries.embeddings.shape == (3, 16) and np.allclose(queries.embeddings, expected, atol=1e-6)
    assert embedder.holder.last_meta is queries.meta


def test_the_engine_names_of_0_1_0_still_work_with_a_warning(reference_reranker):
    engine = reference_reranker
    requests = [(QUERY, DOCUMENTS), ("gravity", DOCUMENTS[:2])]
    expected = engine.score_batch_with_meta(requests).scores
    alone = engine.score(QUERY, DOCUMENTS)  # the same pack layout as each call below: the same floats
    with pytest.warns(DeprecationWarning, match="score_batch is deprecated"):
        assert engine.score_batch(requests) == expected
    with pytest.warns(DeprecationWarning, match="score_async is deprecated"):
        assert asyncio.run(engine.score_async(QUERY, DOCUMENTS)) == alone
    with pytest.warns(DeprecationWarning, match="score_with_meta_async"):
        assert asyncio.run(engine.score_with_meta_async(QUERY, DOCUMENTS)).scores == alone
    with pytest.warns(DeprecationWarning, match="score_batch_with_meta_async"):
        assert asyncio.run(engine.score_batch_with_meta_async(requests)).scores == expected
    assert asyncio.run(score_requests_async(engine, requests)).scores == expected
    with pytest.raises(AttributeError, match="no attribute 'scores_of'"):
        _ = engine.scores_of
