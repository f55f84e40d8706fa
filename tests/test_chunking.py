"""Opt-in chunked reranking: a long document scored in token windows, by the best window's official score."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qwen3_rag_components import Qwen3RerankEngine, RerankOptions
from qwen3_rag_components.engine.errors import InvalidParameter
from qwen3_rag_components.engine.options import Chunking, chunking_of
from qwen3_rag_components.testing.oracle import official_rerank_scores

TOLERANCE = 1e-5
QUERY = "which river flows through the capital?"
WORDS = "the river crosses the old capital and the mountains keep the valley green every spring".split()


@given(size=st.integers(1, 40), overlap_share=st.floats(0, 0.99), length=st.integers(0, 300))
def test_windows_cover_the_document_in_order_with_the_overlap(size, overlap_share, length):
    overlap = int(overlap_share * size)
    windows = Chunking(size, overlap).windows(length)
    assert windows[0][0] == 0 and windows[-1][1] == length
    assert all(0 < end - start <= size for start, end in windows) or length == 0
    for (start, end), (next_start, next_end) in itertools.pairwise(windows):
        assert next_start > start and next_end > end
        assert end - next_start == overlap  # every window but the last is full
    if length <= size:
        assert windows == [(0, length)]


@pytest.mark.parametrize(
    ("arguments", "param"),
    [((0,), "max_tokens_per_doc"), ((8, 8), "overlap"), ((8, -1), "overlap"), ((8, True), "overlap")],
)
def test_bad_windows_name_their_parameter(arguments, param):
    with pytest.raises(InvalidParameter) as raised:
        Chunking(*arguments)
    assert raised.value.param == param
    with pytest.raises(InvalidParameter, match="chunk_overlap applies with max_tokens_per_doc only"):
        chunking_of(None, 4)
    with pytest.raises(TypeError, match="chunking must be a Chunking"):
        RerankOptions(chunking=64)


def chunk_texts(engine, tokenizer, document: str, chunking: Chunking) -> list[str]:
    """Each window of the document's tokens as the text the official code gets for it (and a check that the
    official tokenization of that text gives the window's tokens back)."""
    ids = engine.text.plain_ids([" " + document])[0]
    texts = []
    for start, end in chunking.windows(len(ids)):
        text = tokenizer.decode(ids[start:end])
        assert text.startswith(" ")  # the official template puts the space before the document
        assert tokenizer.encode(text, add_special_tokens=False) == ids[start:end]
        texts.append(text[1:])
    return texts


def test_a_three_chunk_document_scores_its_best_chunk(rerank_engine, official_reranker):
    model, tokenizer = official_reranker
    document = " ".join(WORDS * 3)
    long_one = " ".join(reversed(WORDS * 2))
    short = "the capital"
    chunking = Chunking(max_tokens_per_doc=20, overlap=4)
    chunks = chunk_texts(rerank_engine, tokenizer, document, chunking)
    assert len(chunks) == 3
    chunked = rerank_engine.with_options(chunking=chunking)
    result = chunked.score_with_meta(QUERY, [short, document, long_one, document])
    official = official_rerank_scores(model, tokenizer, QUERY, chunks)
    assert abs(result.scores[1] - max(official)) <= TOLERANCE and result.scores[3] == result.scores[1]
    assert max(official) - min(official) > 1e-3  # the windows differ: taking the max is what is tested
    long_chunks = chunk_texts(rerank_engine, tokenizer, long_one, chunking)
    assert abs(result.scores[2] - max(official_rerank_scores(model, tokenizer, QUERY, long_chunks))) <= TOLERANCE
    assert abs(result.scores[0] - official_rerank_scores(model, tokenizer, QUERY, [short])[0]) <= TOLERANCE
    meta = result.meta
    assert (meta.documents, meta.unique_documents, meta.chunks) == (4, 3, 1 + 3 + len(long_chunks))
    assert rerank_engine.score_with_meta(QUERY, [short]).meta.chunks is None  # off by default


def test_logits_take_the_best_window_too(rerank_engine):
    chunked = rerank_engine.with_options(chunking=Chunking(16))
    document = " ".join(WORDS * 2)
    probabilities = chunked.score(QUERY, [document])
    logits = chunked.score(QUERY, [document], return_logits=True)
    assert abs(1 / (1 + 2.718281828459045 ** -logits[0]) - probabilities[0]) <= 1e-6


def test_windows_are_cut_by_max_length_like_documents(rerank_engine, official_reranker):
    model, tokenizer = official_reranker
    document = " ".join(WORDS * 4)
    small = rerank_engine.with_options(max_length=100, chunking=Chunking(max_tokens_per_doc=60))
    result = small.score_with_meta(QUERY, [document])
    windows = chunk_texts(rerank_engine, tokenizer, document, Chunking(60))
    expected = max(official_rerank_scores(model, tokenizer, QUERY, windows, max_length=100))
    assert abs(result.scores[0] - expected) <= TOLERANCE and result.meta.truncated_documents == 1


def test_every_reranker_and_the_cohere_route_take_the_same_windows(reranker_model):
    from haystack import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from qwen3_rag_components.haystack import Qwen3Ranker
    from qwen3_rag_components.langchain import Qwen3Reranker
    from qwen3_rag_components.llamaindex import Qwen3Rerank

    from .serve_api.conftest import AUTH, make_client

    texts = [" ".join(WORDS * 3), "the capital", " ".join(reversed(WORDS * 2))]
    engine = Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu")
    expected = engine.with_options(chunking=Chunking(20, 4)).score_with_meta(QUERY, texts)
    windows = {"max_tokens_per_doc": 20, "chunk_overlap": 4}

    haystack = Qwen3Ranker(reranker_model, **windows).run(QUERY, [Document(content=t) for t in texts])
    assert sorted(d.score for d in haystack["documents"]) == sorted(expected.scores)
    assert haystack["meta"]["chunks"] == expected.meta.chunks > len(texts)
    langchain = Qwen3Reranker(model=reranker_model, top_n=None, **windows).rerank(texts, QUERY)
    assert {r["index"]: r["relevance_score"] for r in langchain} == dict(enumerate(expected.scores))
    nodes = [NodeWithScore(node=TextNode(text=t)) for t in texts]
    llamaindex = Qwen3Rerank(model=reranker_model, top_n=3, **windows).postprocess_nodes(nodes, query_str=QUERY)
    assert sorted(n.score for n in llamaindex) == sorted(expected.scores)

    cohere = make_client(reranker_model, None).post(
        "/v2/rerank", json={"query": QUERY, "documents": texts, "max_tokens_per_doc": 20}, headers=AUTH
    )
    by_window = engine.with_options(chunking=Chunking(20)).score_with_meta(QUERY, texts)
    body = cohere.json()
    assert {r["index"]: r["relevance_score"] for r in body["results"]} == dict(enumerate(by_window.scores))
    assert body["meta"]["engine"]["chunks"] == by_window.meta.chunks
