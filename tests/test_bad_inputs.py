"""Bad input catalogue: every case gets a clear error naming the value and the fix, or a documented result."""

from __future__ import annotations

import math

import numpy as np
import pytest

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine

QUERY = "what is it?"
NOT_A_LIST = [
    (None, "got NoneType"),
    (42, "got int"),
    (b"bytes", "got bytes"),
    ({"text": "a"}, "got dict"),
    ("one string", "wrap it in a list"),
]
BAD_ENTRIES = [([["nested"]], r"\[0\] is list"), (["ok", 3.5], r"\[1\] is float"), (["ok", b"x"], r"\[1\] is bytes")]


@pytest.mark.parametrize(("value", "message"), NOT_A_LIST + BAD_ENTRIES)
def test_engines_reject_what_is_not_a_list_of_strings(rerank_engine, embed_engine, value, message):
    with pytest.raises(TypeError, match=message):
        rerank_engine.score(QUERY, value)
    with pytest.raises(TypeError, match=message):
        embed_engine.embed_documents(value)
    with pytest.raises(TypeError, match=message):
        embed_engine.embed_queries(value)


@pytest.mark.parametrize("budget", [0, -1, math.nan, 2.5, "8192", None])
def test_bad_pack_budgets(rerank_engine, embed_engine, budget):
    with pytest.raises(ValueError, match="max_tokens_per_pack="):
        rerank_engine.with_options(max_tokens_per_pack=budget)
    with pytest.raises(ValueError, match="max_tokens_per_pack="):
        embed_engine.with_options(max_tokens_per_pack=budget)


def test_budget_smaller_than_the_prefix_gives_one_document_per_pack(rerank_engine):
    documents = ["alpha", "beta", "gamma"]
    result = rerank_engine.with_options(max_tokens_per_pack=5).score_with_meta(QUERY, documents)
    assert result.meta.packs == 3
    assert result.scores == pytest.approx(rerank_engine.score(QUERY, documents), abs=1e-5)


def test_ten_thousand_documents_in_one_call_keep_their_order(embed_engine):
    texts = [f"document number {i}" for i in range(10_000)]
    result = embed_engine.encode(texts, dimensions=8)
    assert result.embeddings.shape == (10_000, 8) and result.meta.unique_documents == 10_000
    for index in (0, 1, 4_321, 9_999):
        assert (
            np.abs(result.embeddings[index] - embed_engine.encode([texts[index]], dimensions=8).embeddings[0]).max()
            <= 1e-5
        )


def test_a_million_character_document_is_truncated_by_the_official_rule(rerank_engine, embed_engine):
    huge = "word " * 200_000
    result = rerank_engine.score_with_meta(QUERY, [huge, "short"])
    assert result.meta.truncated_documents == 1 and all(0 < s < 1 for s in result.scores)
    assert embed_engine.encode([huge]).meta.truncated_documents == 1


def test_missing_model_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(OSError, match="no-such-model"):
        Qwen3RerankEngine.from_pretrained(str(missing), device="cpu", local_files_only=True)
    with pytest.raises(OSError, match="no-such-model"):
        Qwen3EmbedEngine.from_pretrained(str(missing), device="cpu", local_files_only=True)
