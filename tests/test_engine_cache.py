"""The shared engine cache and with_options: one loaded model per checkpoint/device/dtype."""

from __future__ import annotations

import pytest

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine, clear_engine_cache, get_engine


@pytest.fixture(autouse=True)
def empty_cache():
    clear_engine_cache()
    yield
    clear_engine_cache()


def test_same_checkpoint_and_placement_share_one_loaded_model(reranker_paths):
    path = str(reranker_paths["tied"])
    first = get_engine(Qwen3RerankEngine, path, device="cpu")
    assert get_engine(Qwen3RerankEngine, path, device="cpu", dtype="float32") is first
    tuned = get_engine(Qwen3RerankEngine, path, device="cpu", max_docs_per_pack=2, instruction="Find code")
    assert tuned is not first and tuned.model is first.model
    assert (tuned.max_docs_per_pack, tuned.instruction, first.max_docs_per_pack) == (2, "Find code", None)
    assert get_engine(Qwen3RerankEngine, str(reranker_paths["untied"]), device="cpu").model is not first.model


def test_embed_engines_are_cached_apart_from_rerank_engines(embedder_paths):
    path = str(embedder_paths["base"])
    engine = get_engine(Qwen3EmbedEngine, path, device="cpu", max_tokens_per_pack=64)
    assert isinstance(engine, Qwen3EmbedEngine) and engine.max_tokens_per_pack == 64
    assert get_engine(Qwen3EmbedEngine, path, device="cpu").model is engine.model


def test_with_options_validates_and_leaves_the_original_alone(rerank_engine):
    clone = rerank_engine.with_options(max_tokens_per_pack=32)
    assert (clone.max_tokens_per_pack, rerank_engine.max_tokens_per_pack) == (32, 8192)
    assert clone.score("q", ["a", "b"]) == pytest.approx(rerank_engine.score("q", ["a", "b"]), abs=1e-6)
    with pytest.raises(ValueError, match="max_tokens_per_pack=0"):
        rerank_engine.with_options(max_tokens_per_pack=0)
    with pytest.raises(TypeError, match=r"unknown options \['batch_size'\]"):
        rerank_engine.with_options(batch_size=4)
