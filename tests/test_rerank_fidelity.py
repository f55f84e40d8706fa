"""The engine's scores equal the official per-pair computation (testing/oracle.py) to 1e-5 in fp32."""

from __future__ import annotations

import math
import statistics

import pytest

from qwen3_rag_components import Qwen3RerankEngine
from qwen3_rag_components.testing.oracle import official_rerank_scores

from .texts import BOUNDARY_DOCUMENTS, random_documents

TOLERANCE = 1e-5
QUERY = "What is the capital of China?"


def max_abs_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def test_boundary_and_mixed_documents_match_official(rerank_engine, official_reranker):
    documents = BOUNDARY_DOCUMENTS + random_documents(40, seed=7) + ["duplicate doc", "duplicate doc"]
    assert len(documents) >= 50
    expected = official_rerank_scores(*official_reranker, QUERY, documents)
    scores = rerank_engine.score(QUERY, documents)
    assert max_abs_diff(scores, expected) <= TOLERANCE
    # The comparison means something only if the tiny model's scores actually differ between documents.
    assert statistics.pstdev(expected) > 0.05


def test_custom_instruction_and_unicode_query_match_official(rerank_engine, official_reranker):
    query, instruction = "  ¿Dónde está 北京? 😀 ", "Judge relevance\tfor a multilingual query"
    documents = BOUNDARY_DOCUMENTS[:20]
    expected = official_rerank_scores(*official_reranker, query, documents, instruction=instruction)
    assert max_abs_diff(rerank_engine.score(query, documents, instruction=instruction), expected) <= TOLERANCE


def test_truncation_by_small_max_length_matches_official(reranker_path, official_reranker):
    max_length = 110
    engine = Qwen3RerankEngine.from_pretrained(str(reranker_path), device="cpu", max_length=max_length)
    documents = random_documents(12, seed=3) + ["short", "x" * 400, "word " * 200]
    expected = official_rerank_scores(*official_reranker, QUERY, documents, max_length=max_length)
    result = engine.score_with_meta(QUERY, documents)
    assert max_abs_diff(result.scores, expected) <= TOLERANCE
    assert result.meta.truncated_documents >= 3


def test_logits_are_the_yes_no_margin(rerank_engine, official_reranker):
    documents = random_documents(5, seed=11)
    probabilities = rerank_engine.score(QUERY, documents)
    margins = rerank_engine.score(QUERY, documents, return_logits=True)
    assert [1 / (1 + math.exp(-m)) for m in margins] == pytest.approx(probabilities, abs=1e-6)
