"""Qwen3Embeddings: vectors equal the engine's, instructions, MRL, async, sharing, errors."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from qwen3_rag_components import Qwen3EmbedEngine, get_engine
from qwen3_rag_components.langchain import Qwen3Embeddings

# The adapter makes the engine call the reference makes (the same texts in one call, the same options): the same
# pack layout, so the same bits (docs/fidelity.md, Reproducibility).
TOLERANCE = 0.0
TEXTS = ["Dense retrieval matches vectors.", "The recipe calls for flour.", "", "北京是中国的首都。", "dup", "dup"]
QUERY = "what is dense retrieval?"


@pytest.fixture
def make_embeddings(embedder_model: str):
    def make(**fields) -> Qwen3Embeddings:
        return Qwen3Embeddings(model=embedder_model, device="cpu", local_files_only=True, **fields)

    return make


def close(actual, expected) -> bool:
    return np.abs(np.asarray(actual) - np.asarray(expected)).max() <= TOLERANCE


def test_documents_and_queries_equal_the_engine(make_embeddings, reference_embedder):
    embeddings = make_embeddings()
    vectors = embeddings.embed_documents(TEXTS)
    assert isinstance(vectors, list) and all(isinstance(v, list) and isinstance(v[0], float) for v in vectors)
    assert close(vectors, reference_embedder.embed_documents(TEXTS))
    assert close(embeddings.embed_query(QUERY), reference_embedder.embed_queries([QUERY])[0])
    assert not close(embeddings.embed_query(QUERY), embeddings.embed_documents([QUERY])[0])  # instruction is used


def test_instruction(make_embeddings, reference_embedder):
    instruction = "Retrieve code snippets"
    embeddings = make_embeddings(instruction=instruction)
    with pytest.warns(DeprecationWarning, match=r"query_instruction=\.\.\.\) is now instruction="):
        assert make_embeddings(query_instruction=instruction).instruction == instruction
    assert close(embeddings.embed_query(QUERY), reference_embedder.embed_queries([QUERY], instruction=instruction)[0])
    assert close(embeddings.embed_documents(TEXTS), reference_embedder.embed_documents(TEXTS))  # documents: none


def test_dimensions_and_normalize(make_embeddings, reference_embedder):
    vectors = make_embeddings(dimensions=16).embed_documents(TEXTS)
    assert close(vectors, reference_embedder.embed_documents(TEXTS, dimensions=16))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5) and len(vectors[0]) == 16
    raw = make_embeddings(normalize=False).embed_query(QUERY)
    assert close(raw, reference_embedder.embed_queries([QUERY], normalize=False)[0])
    with pytest.raises(ValueError, match="dimensions=65 is out of range"):  # checked against the model on first use
        make_embeddings(dimensions=65).embed_query(QUERY)


def test_precision_equals_sentence_transformers_quantization(make_embeddings, reference_embedder):
    from sentence_transformers.util.quantization import quantize_embeddings

    floats = reference_embedder.encode(TEXTS).embeddings
    ranges = np.vstack((floats.min(axis=0), floats.max(axis=0)))
    embeddings = make_embeddings(precision="uint8", ranges=ranges.tolist())
    assert embeddings.embed_documents(TEXTS) == quantize_embeddings(floats, "uint8", ranges=ranges).tolist()
    query = reference_embedder.encode([QUERY], is_query=True).embeddings
    assert embeddings.embed_query(QUERY) == quantize_embeddings(query, "uint8", ranges=ranges).tolist()[0]
    binary = make_embeddings(precision="ubinary").embed_documents(TEXTS)
    assert binary == quantize_embeddings(floats, "ubinary").tolist()
    with pytest.raises(ValueError, match="one vector has none; pass ranges=quantization_ranges"):
        make_embeddings(precision="int8").embed_query(QUERY)


def test_int8_quantization_equals_the_int8_engine(make_embeddings, embedder_model):
    engine = Qwen3EmbedEngine.from_pretrained(embedder_model, device="cpu", quantization="int8")
    embeddings = make_embeddings(quantization="int8")
    assert close(embeddings.embed_documents(TEXTS), engine.embed_documents(TEXTS))
    assert embeddings.last_meta is not None and embeddings.last_meta.quantization == "int8"
    assert embeddings.model_dump()["quantization"] == "int8"


def test_show_progress_writes_a_bar(make_embeddings, capsys):
    make_embeddings(show_progress=True).embed_documents(TEXTS)
    assert "Embedding" in capsys.readouterr().err


async def test_async_equals_sync(make_embeddings):
    embeddings = make_embeddings()
    assert await embeddings.aembed_documents(TEXTS) == embeddings.embed_documents(TEXTS)
    assert await embeddings.aembed_query(QUERY) == embeddings.embed_query(QUERY)


def test_empty_input_returns_nothing_without_loading_the_model():
    embeddings = Qwen3Embeddings(model="/does/not/exist", local_files_only=True)
    assert embeddings.embed_documents([]) == []
    assert not embeddings.holder.loaded


def test_instances_share_one_loaded_model(make_embeddings, embedder_model):
    first, second = make_embeddings(), make_embeddings(max_tokens_per_pack=64, dimensions=8)
    assert first.holder.engine.model is second.holder.engine.model
    shared = get_engine(Qwen3EmbedEngine, embedder_model, device="cpu", local_files_only=True)
    assert first.holder.engine.model is shared.model
    assert second.holder.engine.options.max_tokens_per_pack == 64
    second.embed_documents(TEXTS)
    meta = second.last_meta
    assert (meta.documents, meta.unique_documents, meta.packs) == (len(TEXTS), len(set(TEXTS)), 1)
    assert first.last_meta is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"model_name": "x"}, "Extra inputs are not permitted"),
        ({"dimensions": 0}, "dimensions=0 is invalid"),
        ({"max_length": 0}, "max_length=0 is invalid"),
        ({"max_tokens_per_pack": 0}, "max_tokens_per_pack=0 is invalid"),
        ({"dtype": "float64"}, "dtype='float64' is not supported"),
        ({"precision": "int4"}, "precision='int4' is not supported; use one of float32, int8"),
        ({"quantization": "int4"}, r"quantization='int4' is not supported; use one of \['int8'\]"),
        ({"ranges": [[1.0, 2.0]]}, r"ranges must be 2 rows of finite floats"),
    ],
)
def test_invalid_fields_are_rejected(fields, message):
    with pytest.raises(ValidationError, match=message):
        Qwen3Embeddings(**fields)


def test_bad_calls_say_what_to_do(make_embeddings):
    embeddings = make_embeddings()
    with pytest.raises(TypeError, match="single string"):
        embeddings.embed_documents("one text")
    with pytest.raises(TypeError, match="text must be a str"):
        embeddings.embed_query(["a list"])
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        embeddings.embed_documents(["ok", 3])


def test_defaults_and_secret_token():
    embeddings = Qwen3Embeddings(token="hf_secret")
    assert embeddings.model == "Qwen/Qwen3-Embedding-0.6B" and embeddings.normalize and embeddings.dimensions is None
    assert "hf_secret" not in repr(embeddings)
