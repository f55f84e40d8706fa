"""The shared engine cache and with_options: one loaded model per checkpoint/device/dtype."""

from __future__ import annotations

import pytest

from qwen3_rag_components import (
    EmbedOptions,
    LoadSpec,
    Qwen3EmbedEngine,
    Qwen3RerankEngine,
    RerankOptions,
    clear_engine_cache,
    get_engine,
)
from qwen3_rag_components.engine import shared_engine


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
    assert (tuned.options.max_docs_per_pack, tuned.options.instruction) == (2, "Find code")
    assert first.options == RerankOptions()
    assert get_engine(Qwen3RerankEngine, str(reranker_paths["untied"]), device="cpu").model is not first.model


def test_embed_engines_are_cached_apart_from_rerank_engines(embedder_paths):
    path = str(embedder_paths["base"])
    engine = get_engine(Qwen3EmbedEngine, path, device="cpu", max_tokens_per_pack=64)
    assert isinstance(engine, Qwen3EmbedEngine) and engine.options.max_tokens_per_pack == 64
    assert get_engine(Qwen3EmbedEngine, path, device="cpu").model is engine.model


def test_with_options_validates_and_leaves_the_original_alone(rerank_engine):
    clone = rerank_engine.with_options(max_tokens_per_pack=32)
    assert (clone.options.max_tokens_per_pack, rerank_engine.options.max_tokens_per_pack) == (32, 8192)
    assert clone.scheduler is rerank_engine.scheduler and clone.model is rerank_engine.model
    # Another pack budget is another layout: the documented 1e-5 bound.
    assert clone.score("q", ["a", "b"]) == pytest.approx(rerank_engine.score("q", ["a", "b"]), abs=1e-5)
    with pytest.raises(ValueError, match="max_tokens_per_pack=0"):
        rerank_engine.with_options(max_tokens_per_pack=0)
    with pytest.raises(TypeError, match=r"unknown options \['batch_size'\]"):
        rerank_engine.with_options(batch_size=4)


def test_with_options_takes_a_whole_options_object(rerank_engine, embed_engine):
    options = RerankOptions(instruction="Find code", max_docs_per_pack=3)
    assert rerank_engine.with_options(options).options == options
    assert rerank_engine.with_options(options, max_docs_per_pack=1).options.max_docs_per_pack == 1
    with pytest.raises(TypeError, match="options must be RerankOptions, got EmbedOptions"):
        rerank_engine.with_options(EmbedOptions())
    with pytest.raises(ValueError, match=r"dimensions=65 is out of range: use an int from 1 to 64"):
        embed_engine.with_options(dimensions=65)  # the hidden-size check needs the loaded model


def test_the_cache_keys_on_the_resolved_load_spec(reranker_paths):
    path = str(reranker_paths["tied"])
    first = shared_engine(Qwen3RerankEngine, LoadSpec(path))
    assert shared_engine(Qwen3RerankEngine, LoadSpec(path, device="cpu", dtype="fp32")) is first
    tuned = shared_engine(Qwen3RerankEngine, LoadSpec(path), RerankOptions(max_length=512))
    assert tuned.model is first.model and tuned.options.max_length == 512
    assert shared_engine(Qwen3RerankEngine, LoadSpec(path, dtype="bfloat16")).model is not first.model


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: RerankOptions(max_length=0), ValueError, "max_length=0 is invalid; it must be a positive int."),
        (lambda: RerankOptions(max_docs_per_pack=True), ValueError, "max_docs_per_pack=True is invalid"),
        (lambda: RerankOptions(instruction=3), TypeError, "instruction must be a str or None, got int."),
        (lambda: EmbedOptions(max_length=1), ValueError, "max_length=1 leaves no room for text before <|endoftext|>"),
        (lambda: EmbedOptions(dimensions=0), ValueError, "dimensions=0 is invalid; it must be a positive int or None."),
        (lambda: EmbedOptions(normalize="yes"), TypeError, "normalize must be True or False, got 'yes'."),
        (lambda: LoadSpec(3), TypeError, "model must be a hub id or a local folder (str), got int."),
        (lambda: LoadSpec("m", dtype="int8"), ValueError, "dtype='int8' is not supported"),
        (lambda: LoadSpec("m", device="gpu0"), ValueError, "device='gpu0' is not a torch device"),
    ],
)
def test_options_are_checked_where_they_are_declared(make, error, message):
    with pytest.raises(error) as raised:
        make()
    assert str(raised.value).startswith(message)


def test_a_home_folder_is_expanded_and_hub_ids_are_left_alone():
    assert LoadSpec("~/models/reranker").model.endswith("/models/reranker")
    assert not LoadSpec("~/models/reranker").model.startswith("~")
    assert LoadSpec("Qwen/Qwen3-Reranker-0.6B").model == "Qwen/Qwen3-Reranker-0.6B"
    assert "token" not in repr(LoadSpec("m", token="hf_secret"))
