"""Qwen3TextEmbedder and Qwen3DocumentEmbedder: serialisation, defaults, errors, vectors equal to the engine's."""

from __future__ import annotations

import numpy as np
import pytest
from haystack import Document
from haystack.utils import ComponentDevice, Secret

from qwen3_rag_components.haystack import Qwen3DocumentEmbedder, Qwen3TextEmbedder

from .conftest import CPU

# The adapter makes the engine call the reference makes (the same texts in one call, the same options): the same
# pack layout, so the same bits (docs/fidelity.md, Reproducibility).
TOLERANCE = 0.0
QUERY = "What is the capital of China?"
TEXT_TYPE = "qwen3_rag_components.haystack.text_embedder.Qwen3TextEmbedder"
DOC_TYPE = "qwen3_rag_components.haystack.document_embedder.Qwen3DocumentEmbedder"
DEFAULT_TOKEN = {"type": "env_var", "env_vars": ["HF_API_TOKEN", "HF_TOKEN"], "strict": False}
PLACEMENT = {
    "model": "my/embedder",
    "device": {"type": "single", "device": "cuda:0"},
    "dtype": "float16",
    "quantization": None,
    "token": {"type": "env_var", "env_vars": ["MY_TOKEN"], "strict": True},
    "local_files_only": True,
    "revision": "main",
}
PLACEMENT_KWARGS = {
    "device": ComponentDevice.from_str("cuda:0"),
    "dtype": "float16",
    "quantization": None,
    "token": Secret.from_env_var("MY_TOKEN"),
    "local_files_only": True,
    "revision": "main",
}


def embed_texts(documents: list[Document], fields: tuple[str, ...] = ()) -> list[str]:
    return [
        "\n".join([*(str(d.meta[f]) for f in fields if d.meta.get(f) is not None), d.content or ""]) for d in documents
    ]


# ---- serialisation and defaults (no model) --------------------------------------------------------------------


def test_text_embedder_to_dict_defaults():
    assert Qwen3TextEmbedder().to_dict() == {
        "type": TEXT_TYPE,
        "init_parameters": {
            "model": "Qwen/Qwen3-Embedding-0.6B",
            "device": None,
            "dtype": None,
            "quantization": None,
            "token": DEFAULT_TOKEN,
            "local_files_only": False,
            "revision": None,
            "instruction": None,
            "dimensions": None,
            "normalize": True,
            "precision": "float32",
            "ranges": None,
            "max_length": 8192,
        },
    }


def test_document_embedder_to_dict_defaults():
    assert Qwen3DocumentEmbedder().to_dict() == {
        "type": DOC_TYPE,
        "init_parameters": {
            "model": "Qwen/Qwen3-Embedding-0.6B",
            "device": None,
            "dtype": None,
            "quantization": None,
            "token": DEFAULT_TOKEN,
            "local_files_only": False,
            "revision": None,
            "dimensions": None,
            "normalize": True,
            "precision": "float32",
            "ranges": None,
            "max_length": 8192,
            "max_tokens_per_pack": 8192,
            "progress_bar": True,
            "meta_fields_to_embed": [],
            "embedding_separator": "\n",
        },
    }


TEXT_CUSTOM = {
    "type": TEXT_TYPE,
    "init_parameters": {
        **PLACEMENT,
        "instruction": "Retrieve code",
        "dimensions": 32,
        "normalize": False,
        "precision": "int8",
        "ranges": [[-0.5] * 32, [0.5] * 32],
        "max_length": 256,
    },
}
DOC_CUSTOM = {
    "type": DOC_TYPE,
    "init_parameters": {
        **PLACEMENT,
        "dimensions": 32,
        "normalize": False,
        "precision": "ubinary",
        "ranges": None,
        "max_length": 256,
        "max_tokens_per_pack": 1024,
        "progress_bar": False,
        "meta_fields_to_embed": ["title"],
        "embedding_separator": " - ",
    },
}


def test_to_dict_custom():
    text = Qwen3TextEmbedder(
        "my/embedder",
        **PLACEMENT_KWARGS,
        instruction="Retrieve code",
        dimensions=32,
        normalize=False,
        precision="int8",
        ranges=[[-0.5] * 32, [0.5] * 32],
        max_length=256,
    )
    assert text.to_dict() == TEXT_CUSTOM
    document = Qwen3DocumentEmbedder(
        "my/embedder",
        **PLACEMENT_KWARGS,
        dimensions=32,
        normalize=False,
        precision="ubinary",
        max_length=256,
        max_tokens_per_pack=1024,
        progress_bar=False,
        meta_fields_to_embed=["title"],
        embedding_separator=" - ",
    )
    assert document.to_dict() == DOC_CUSTOM


@pytest.mark.parametrize(("cls", "data"), [(Qwen3TextEmbedder, TEXT_CUSTOM), (Qwen3DocumentEmbedder, DOC_CUSTOM)])
def test_from_dict_round_trip(cls, data):
    copy = {"type": data["type"], "init_parameters": dict(data["init_parameters"])}
    component = cls.from_dict(copy)
    assert copy == data
    assert component.device == ComponentDevice.from_str("cuda:0")
    assert component.token == Secret.from_env_var("MY_TOKEN")
    assert component.to_dict() == data


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (Qwen3TextEmbedder, {"dimensions": 0}, "dimensions=0"),
        (Qwen3TextEmbedder, {"max_length": -1}, "max_length=-1"),
        (Qwen3DocumentEmbedder, {"max_tokens_per_pack": 0}, "max_tokens_per_pack=0"),
        (Qwen3DocumentEmbedder, {"dimensions": 1.5}, "dimensions=1.5"),
        (Qwen3DocumentEmbedder, {"dtype": "half-ish"}, "is not supported"),
        (Qwen3DocumentEmbedder, {"precision": "int4"}, "precision='int4' is not supported; use one of float32"),
        (Qwen3DocumentEmbedder, {"ranges": [[0.0]]}, r"ranges must be 2 rows .* got shape \(1, 1\)"),
        (Qwen3TextEmbedder, {"precision": "uint8"}, "embeds one query at a time, and precision='uint8' needs"),
    ],
)
def test_init_errors(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_wrong_input_types_point_to_the_other_embedder():
    text = Qwen3TextEmbedder("does/not-exist", local_files_only=True)
    with pytest.raises(TypeError, match=r"Qwen3TextEmbedder expects a string.*please use the Qwen3DocumentEmbedder"):
        text.run([Document(content="x")])
    document = Qwen3DocumentEmbedder("does/not-exist", local_files_only=True)
    with pytest.raises(TypeError, match=r"expects a list of Documents.*please use the Qwen3TextEmbedder"):
        document.run("a string")
    with pytest.raises(TypeError, match="got list with a str entry"):
        document.run(["a", "b"])
    assert not text.holder.loaded and not document.holder.loaded


@pytest.mark.asyncio
async def test_empty_documents_return_early_without_loading():
    embedder = Qwen3DocumentEmbedder("does/not-exist", local_files_only=True)
    result = embedder.run([])
    assert result["documents"] == [] and (result["meta"]["documents"], result["meta"]["dtype"]) == (0, "float32")
    assert (await embedder.run_async([]))["documents"] == []
    assert not embedder.holder.loaded


# ---- on the tiny checkpoint -----------------------------------------------------------------------------------


def test_text_embedding_equals_engine(embedder_model, reference_embedder):
    embedding = Qwen3TextEmbedder(embedder_model, device=CPU).run(QUERY)["embedding"]
    assert isinstance(embedding, list) and all(isinstance(x, float) for x in embedding)
    expected = reference_embedder.encode([QUERY], is_query=True).embeddings[0]
    assert np.abs(np.array(embedding) - expected).max() <= TOLERANCE
    as_document = reference_embedder.encode([QUERY]).embeddings[0]
    assert np.abs(expected - as_document).max() > 1e-3  # the query went in with its instruction


def test_text_embedder_options(embedder_model, reference_embedder):
    embedder = Qwen3TextEmbedder(
        embedder_model, device=CPU, instruction="Retrieve code", dimensions=16, normalize=False, max_length=8
    )
    embedding = embedder.run(QUERY + " and what else? " * 5)["embedding"]
    engine = reference_embedder.with_options(max_length=8)
    expected = engine.encode(
        [QUERY + " and what else? " * 5], is_query=True, instruction="Retrieve code", dimensions=16, normalize=False
    )
    assert expected.meta.truncated_documents == 1
    assert len(embedding) == 16
    assert np.abs(np.array(embedding) - expected.embeddings[0]).max() <= TOLERANCE


def test_document_embeddings_equal_engine(embedder_model, reference_embedder, documents):
    documents = [*documents, Document(content=None, meta={"title": "Only a title"}), Document(content="")]
    embedder = Qwen3DocumentEmbedder(embedder_model, device=CPU, meta_fields_to_embed=["title", "year"])
    result = embedder.run(documents)["documents"]
    texts = embed_texts(documents, ("title", "year"))
    assert texts[-2:] == ["Only a title\n", ""]
    expected = reference_embedder.encode(texts).embeddings
    assert [d.id for d in result] == [d.id for d in documents]
    assert np.abs(np.array([d.embedding for d in result]) - expected).max() <= TOLERANCE
    assert all(d.embedding is None for d in documents)  # the inputs are not modified: the output holds copies
    assert [(d.content, d.meta) for d in result] == [(d.content, d.meta) for d in documents]


def test_document_embedder_options(embedder_model, reference_embedder, documents):
    embedder = Qwen3DocumentEmbedder(
        embedder_model,
        device=CPU,
        dimensions=8,
        normalize=False,
        max_length=6,
        max_tokens_per_pack=16,
        progress_bar=False,
        meta_fields_to_embed=["title"],
        embedding_separator=" | ",
    )
    result = embedder.run(documents)["documents"]
    texts = [" | ".join([*([d.meta["title"]] if d.meta.get("title") else []), d.content]) for d in documents]
    expected = reference_embedder.with_options(max_length=6).encode(texts, dimensions=8, normalize=False)
    assert expected.meta.truncated_documents > 0
    assert np.abs(np.array([d.embedding for d in result]) - expected.embeddings).max() <= 1e-5  # other packs


def test_precision_equals_sentence_transformers_quantization(embedder_model, reference_embedder, documents):
    from sentence_transformers.util.quantization import quantize_embeddings

    texts = [d.content for d in documents]
    floats = reference_embedder.encode(texts, dimensions=16).embeddings
    ranges = [floats.min(axis=0).tolist(), floats.max(axis=0).tolist()]
    embedder = Qwen3DocumentEmbedder(embedder_model, device=CPU, dimensions=16, precision="int8", progress_bar=False)
    result = embedder.run(documents)["documents"]
    assert [d.embedding for d in result] == quantize_embeddings(floats, "int8").tolist()
    text = Qwen3TextEmbedder(embedder_model, device=CPU, dimensions=16, precision="uint8", ranges=ranges)
    query = reference_embedder.encode([QUERY], is_query=True, dimensions=16).embeddings
    expected = quantize_embeddings(query, "uint8", ranges=np.array(ranges)).tolist()[0]
    assert text.run(QUERY)["embedding"] == expected
    binary = Qwen3TextEmbedder(embedder_model, device=CPU, precision="binary").run(QUERY)["embedding"]
    assert len(binary) == (reference_embedder.hidden_size + 7) // 8 and all(isinstance(x, int) for x in binary)


def test_dimensions_above_the_hidden_size(embedder_model):
    with pytest.raises(ValueError, match="dimensions=4096 is out of range"):
        Qwen3DocumentEmbedder(embedder_model, device=CPU, dimensions=4096).run([Document(content="x")])


def test_progress_bar_goes_to_stderr(embedder_model, documents, capsys):
    Qwen3DocumentEmbedder(embedder_model, device=CPU, progress_bar=True).run(documents)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "Embedding" in captured.err


@pytest.mark.asyncio
async def test_async_equals_sync(embedder_model, documents):
    text = Qwen3TextEmbedder(embedder_model, device=CPU, dimensions=32)
    assert (await text.run_async(QUERY))["embedding"] == text.run(QUERY)["embedding"]
    document = Qwen3DocumentEmbedder(embedder_model, device=CPU, progress_bar=False)
    assert (await document.run_async(documents))["documents"] == document.run(documents)["documents"]


def test_text_and_document_embedders_share_one_model(embedder_model):
    text = Qwen3TextEmbedder(embedder_model, device=CPU, instruction="A")
    document = Qwen3DocumentEmbedder(embedder_model, device=CPU, max_tokens_per_pack=64)
    text.warm_up()
    document.warm_up()
    assert text.holder.engine.model is document.holder.engine.model
    assert (text.holder.engine.options.instruction, document.holder.engine.options.max_tokens_per_pack) == ("A", 64)


def test_run_returns_the_meta_of_the_call(embedder_model, documents):
    document = Qwen3DocumentEmbedder(embedder_model, device=CPU, progress_bar=False, max_tokens_per_pack=64)
    result = document.run([*documents, documents[0]])
    meta = result["meta"]
    assert (meta["documents"], meta["unique_documents"], meta["device"], meta["dtype"]) == (7, 6, "cpu", "float32")
    assert meta["packs"] > 1 and meta["tokens_computed"] > 0 and meta["elapsed_ms"] >= meta["compute_ms"] > 0
    assert document.holder.last_meta.to_dict() == meta
    text = Qwen3TextEmbedder(embedder_model, device=CPU)
    assert text.run(QUERY)["meta"]["documents"] == 1
