"""Qwen3Embedding: vectors equal the engine's, query vs text, instruction, MRL, batches, async, sharing, errors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from qwen3_rag_components import Qwen3EmbedEngine, get_engine
from qwen3_rag_components.llamaindex import Qwen3Embedding

TEXTS = ["Dense retrieval matches vectors.", "The recipe calls for flour.", "", "北京是中国的首都。", "dup", "dup"]
QUERY = "what is dense retrieval?"


@pytest.fixture
def make_embedding(embedder_model: str):
    def make(**fields) -> Qwen3Embedding:
        return Qwen3Embedding(model=embedder_model, device="cpu", local_files_only=True, **fields)

    return make


def test_texts_and_queries_equal_the_engine(make_embedding, reference_embedder):
    embed_model = make_embedding()
    vectors = embed_model.get_text_embedding_batch(TEXTS)
    assert isinstance(vectors, list) and all(isinstance(v, list) and isinstance(v[0], float) for v in vectors)
    assert vectors == reference_embedder.embed_documents(TEXTS)  # one engine call, as the reference: the same bits
    assert embed_model.last_meta.documents == len(TEXTS)
    assert embed_model.get_text_embedding(TEXTS[0]) == reference_embedder.embed_documents(TEXTS[:1])[0]
    assert embed_model.get_query_embedding(QUERY) == reference_embedder.embed_queries([QUERY])[0]
    assert embed_model.get_query_embedding(QUERY) != embed_model.get_text_embedding(QUERY)  # instruction is used


def test_instruction(make_embedding, reference_embedder):
    instruction = "Retrieve code snippets"
    embed_model = make_embedding(instruction=instruction)
    expected = reference_embedder.embed_queries([QUERY], instruction=instruction)[0]
    assert embed_model.get_query_embedding(QUERY) == expected
    assert embed_model.get_text_embedding_batch(TEXTS) == reference_embedder.embed_documents(TEXTS)  # texts: none


def test_dimensions_and_normalize(make_embedding, reference_embedder):
    vectors = make_embedding(dimensions=16).get_text_embedding_batch(TEXTS)
    assert vectors == reference_embedder.embed_documents(TEXTS, dimensions=16)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5) and len(vectors[0]) == 16
    raw = make_embedding(normalize=False).get_query_embedding(QUERY)
    assert raw == reference_embedder.embed_queries([QUERY], normalize=False)[0]
    with pytest.raises(ValueError, match="dimensions=65 is out of range"):  # checked against the model on first use
        make_embedding(dimensions=65).get_query_embedding(QUERY)


def test_smaller_batches_make_more_engine_calls_within_the_pack_layout_bound(make_embedding, reference_embedder):
    embed_model = make_embedding(embed_batch_size=4)
    vectors = embed_model.get_text_embedding_batch(TEXTS)
    assert embed_model.last_meta.documents == 2  # the last of two calls: 4 texts, then 2
    # Other packs than the reference's one call: the documented 1e-5 bound of docs/fidelity.md, not the same bits.
    assert np.abs(np.array(vectors) - np.array(reference_embedder.embed_documents(TEXTS))).max() <= 1e-5


def test_show_progress_writes_a_bar(make_embedding, capsys):
    make_embedding(show_progress=True).get_text_embedding_batch(TEXTS)
    assert "Embedding" in capsys.readouterr().err


@pytest.mark.asyncio
async def test_async_equals_sync(make_embedding):
    embed_model = make_embedding()
    assert await embed_model.aget_text_embedding_batch(TEXTS) == embed_model.get_text_embedding_batch(TEXTS)
    assert await embed_model.aget_text_embedding(TEXTS[0]) == embed_model.get_text_embedding(TEXTS[0])
    assert await embed_model.aget_query_embedding(QUERY) == embed_model.get_query_embedding(QUERY)
    assert await embed_model.aget_text_embedding_batch([]) == []


def test_empty_input_returns_nothing_without_loading_the_model():
    embed_model = Qwen3Embedding(model="/does/not/exist", local_files_only=True)
    assert embed_model.get_text_embedding_batch([]) == []
    assert embed_model._get_text_embeddings([]) == []
    assert not embed_model.holder.loaded
    assert embed_model.last_meta.documents == 0 and embed_model.last_meta.packs == 0  # recorded as in every adapter


def test_instances_share_one_loaded_model(make_embedding, embedder_model):
    first, second = make_embedding(), make_embedding(max_tokens_per_pack=64, dimensions=8)
    assert first.holder.engine.model is second.holder.engine.model
    shared = get_engine(Qwen3EmbedEngine, embedder_model, device="cpu", local_files_only=True)
    assert first.holder.engine.model is shared.model  # the cache the Haystack and LangChain adapters load from
    assert second.holder.engine.options.max_tokens_per_pack == 64
    second.get_text_embedding_batch(TEXTS)
    meta = second.last_meta
    assert (meta.documents, meta.unique_documents, meta.packs) == (len(TEXTS), len(set(TEXTS)), 1)
    assert first.last_meta is None


def test_shares_the_model_with_the_langchain_embeddings(make_embedding, embedder_model):
    langchain = pytest.importorskip("qwen3_rag_components.langchain")
    other = langchain.Qwen3Embeddings(model=embedder_model, device="cpu", local_files_only=True)
    assert make_embedding().holder.engine.model is other.holder.engine.model


def test_model_name_follows_model_and_round_trips(embedder_model):
    embed_model = Qwen3Embedding(model=embedder_model, dimensions=8, token="hf_secret")
    assert embed_model.model_name == embedder_model and embed_model.class_name() == "Qwen3Embedding"
    data = embed_model.to_dict()
    assert data["class_name"] == "Qwen3Embedding" and "token" not in data and "hf_secret" not in embed_model.to_json()
    again = Qwen3Embedding.from_dict(data)
    assert (again.model, again.model_name, again.dimensions, again.token) == (embedder_model, embedder_model, 8, None)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"query_instruction": "x"}, "Extra inputs are not permitted"),
        ({"model_name": "Qwen/Qwen3-Embedding-4B"}, r"pass model='Qwen/Qwen3-Embedding-4B' \(model_name is set from"),
        ({"dimensions": 0}, "dimensions=0 is invalid"),
        ({"max_length": 0}, "max_length=0 is invalid"),
        ({"max_tokens_per_pack": 0}, "max_tokens_per_pack=0 is invalid"),
        ({"embed_batch_size": 0}, "embed_batch_size"),
        ({"dtype": "float64"}, "dtype='float64' is not supported"),
    ],
)
def test_invalid_fields_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        Qwen3Embedding(**fields)


def test_bad_calls_say_what_to_do(make_embedding):
    embed_model = make_embedding()
    with pytest.raises(TypeError, match="single string; wrap it in a list, or use get_text_embedding"):
        embed_model.get_text_embedding_batch("one text")
    with pytest.raises(TypeError, match="query must be a str, got list; use get_text_embedding_batch"):
        embed_model.get_query_embedding(["a list"])
    with pytest.raises(TypeError, match="text must be a str, got int"):
        embed_model.get_text_embedding(3)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        embed_model.get_text_embedding_batch(["ok", 3])
    assert not embed_model.holder.loaded  # every check runs before the model loads


def test_defaults_and_secret_token():
    embed_model = Qwen3Embedding(token="hf_secret")
    assert embed_model.model == "Qwen/Qwen3-Embedding-0.6B" and embed_model.normalize and embed_model.dimensions is None
    assert embed_model.embed_batch_size == 2048 and embed_model.max_length == 8192
    assert "hf_secret" not in repr(embed_model)
