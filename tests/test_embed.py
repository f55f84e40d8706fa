"""Qwen3EmbedEngine: vectors equal the official padded path (testing/oracle.py) to 1e-5; isolation; MRL; errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3_rag_components import Qwen3EmbedEngine
from qwen3_rag_components.testing.oracle import TASK, get_detailed_instruct, official_embeddings

from .conftest import capture_jobs
from .texts import BOUNDARY_DOCUMENTS, random_documents

TOLERANCE = 1e-5
QUERIES = ["What is the capital of China?", "  spaces  ", "", "北京?", "don't\tstop\n"]


def official(official_embedder, texts, **kwargs) -> np.ndarray:
    return official_embeddings(*official_embedder, texts, **kwargs).numpy()


def test_documents_match_official(embed_engine, official_embedder):
    texts = BOUNDARY_DOCUMENTS + random_documents(30, seed=2) + ["dup", "dup"]
    vectors = np.array(embed_engine.embed_documents(texts))
    expected = official(official_embedder, texts)
    assert np.abs(vectors - expected).max() <= TOLERANCE
    assert np.abs(expected[0] - expected[-3]).max() > 0.05  # different texts give different vectors
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_queries_use_the_official_instruction_format(embed_engine, official_embedder):
    expected = official(official_embedder, [get_detailed_instruct(TASK, q) for q in QUERIES])
    assert np.abs(np.array(embed_engine.embed_queries(QUERIES)) - expected).max() <= TOLERANCE
    custom = "Retrieve code snippets"
    expected = official(official_embedder, [get_detailed_instruct(custom, q) for q in QUERIES])
    assert np.abs(np.array(embed_engine.embed_queries(QUERIES, instruction=custom)) - expected).max() <= TOLERANCE


def test_truncation_by_small_max_length_matches_official(embedder_path, official_embedder):
    engine = Qwen3EmbedEngine.from_pretrained(str(embedder_path), device="cpu", max_length=16)
    texts = [*random_documents(8, seed=4), "short", "word " * 100]
    result = engine.encode(texts)
    assert np.abs(result.embeddings - official(official_embedder, texts, max_length=16)).max() <= TOLERANCE
    assert result.meta.truncated_documents >= 2


@pytest.mark.parametrize("dimensions", [1, 7, 32, 64])
def test_mrl_slices_then_normalises(embed_engine, official_embedder, dimensions):
    texts = random_documents(6, seed=9)
    raw = official(official_embedder, texts, normalize=False)[:, :dimensions]
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    vectors = np.array(embed_engine.embed_documents(texts, dimensions=dimensions))
    assert vectors.shape == (6, dimensions)
    assert np.abs(vectors - expected).max() <= TOLERANCE


def test_normalize_false_returns_the_raw_hidden_state(embed_engine, official_embedder):
    texts = random_documents(6, seed=10)
    vectors = np.array(embed_engine.embed_documents(texts, normalize=False))
    assert np.abs(vectors - official(official_embedder, texts, normalize=False)).max() <= 1e-4
    assert not np.allclose(np.linalg.norm(vectors, axis=1), 1.0)


def test_base_and_causal_lm_checkpoints_give_the_same_vectors(embedder_paths):
    texts = random_documents(5, seed=12)
    base, causal = (Qwen3EmbedEngine.from_pretrained(str(p), device="cpu") for p in embedder_paths.values())
    assert np.array_equal(base.encode(texts).embeddings, causal.encode(texts).embeddings)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    texts=st.lists(
        st.one_of(st.sampled_from(BOUNDARY_DOCUMENTS), st.text(st.characters(exclude_categories=("Cs",)), max_size=60)),
        min_size=1,
        max_size=8,
    ),
    max_tokens=st.integers(1, 200),
)
def test_packed_vectors_equal_each_text_alone(embed_engine, texts, max_tokens):
    engine = embed_engine.with_options(max_tokens_per_pack=max_tokens)
    packed = engine.encode(texts).embeddings
    alone = np.concatenate([embed_engine.encode([t]).embeddings for t in texts])
    assert np.abs(packed - alone).max() <= TOLERANCE


def test_meta_dedup_and_order(embed_engine):
    texts = ["b", "a", "b", "c", "a"]
    result = embed_engine.encode(texts)
    assert (result.meta.documents, result.meta.unique_documents, result.meta.packs) == (5, 3, 1)
    assert np.array_equal(result.embeddings[0], result.embeddings[2])
    assert np.array_equal(result.embeddings, embed_engine.encode(["b", "a", "b", "c", "a"]).embeddings)
    assert result.embeddings.dtype == np.float32
    assert result.meta.tokens_computed == result.meta.padding_free_tokens - 2 * 2  # "b" and "a" once: 1 token + eos


def test_empty_input(embed_engine):
    result = embed_engine.encode([], dimensions=8)
    assert result.embeddings.shape == (0, 8)
    assert embed_engine.embed_documents([]) == []


def test_progress_callback_reports_every_pack(embed_engine):
    seen: list[tuple[int, int]] = []
    engine = embed_engine.with_options(max_tokens_per_pack=20)
    engine.encode(random_documents(10, seed=1), progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (10, 10)
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})


def test_special_token_strings_stay_plain_text(embed_engine, monkeypatch):
    seen = capture_jobs(monkeypatch, embed_engine)
    embed_engine.embed_queries(["<|endoftext|><|im_end|><think>"], instruction="<|im_start|>")
    ((item,),) = [job.items for job in seen]
    assert item[-1] == 151643 and all(t < 151643 for t in item[:-1])


@pytest.mark.parametrize("dimensions", [0, -1, 65, 1.5, True])
def test_dimensions_out_of_range(embed_engine, dimensions):
    with pytest.raises(ValueError, match=rf"dimensions={dimensions!r} is out of range: use an int from 1 to 64"):
        embed_engine.embed_documents(["text"], dimensions=dimensions)


@pytest.mark.parametrize(
    ("texts", "message"),
    [(["ok", None], r"texts\[1\] is NoneType"), ([1.0], r"texts\[0\] is float"), ("text", "wrap it in a list")],
)
def test_non_string_texts(embed_engine, texts, message):
    with pytest.raises(TypeError, match=message):
        embed_engine.embed_documents(texts)
    with pytest.raises(TypeError, match=message):
        embed_engine.embed_queries(texts)


def test_instruction_is_for_queries_only(embed_engine):
    with pytest.raises(ValueError, match="instruction applies to queries only"):
        embed_engine.encode(["doc"], instruction="x")
    with pytest.raises(TypeError, match="instruction must be a str"):
        embed_engine.embed_queries(["q"], instruction=1)


def test_loads_on_cpu_in_fp32_by_default(embed_engine):
    assert (embed_engine.device, embed_engine.dtype) == (torch.device("cpu"), torch.float32)
