"""Embedding output precision equals sentence-transformers' ``quantize_embeddings`` on the same vectors, for every
precision, with and without calibration ranges; bad values name the choices and the fix."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sentence_transformers.util.quantization import quantize_embeddings as st_quantize

from qwen3_rag_components import Qwen3EmbedEngine
from qwen3_rag_components.engine import EmbedOptions
from qwen3_rag_components.engine.precision import PRECISIONS, quantization_ranges, quantize_embeddings

from .texts import random_documents

FLOATS = st.floats(-4, 4, width=32, allow_nan=False)


def assert_same(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


@settings(max_examples=60, deadline=None)
@given(
    vectors=hnp.arrays(np.float32, st.tuples(st.integers(2, 12), st.integers(1, 20)), elements=FLOATS),
    precision=st.sampled_from(PRECISIONS),
)
def test_equals_sentence_transformers_on_any_vectors(vectors, precision):
    assert_same(quantize_embeddings(vectors, precision), st_quantize(vectors, precision))


@settings(max_examples=40, deadline=None)
@given(
    data=st.data(),
    shape=st.tuples(st.integers(1, 8), st.integers(1, 16)),
    precision=st.sampled_from(["int8", "uint8"]),
)
def test_equals_sentence_transformers_with_calibration_ranges(data, shape, precision):
    vectors = data.draw(hnp.arrays(np.float32, shape, elements=FLOATS))
    calibration = data.draw(hnp.arrays(np.float32, (5, shape[1]), elements=FLOATS))
    ranges = quantization_ranges(calibration)
    expected = st_quantize(vectors, precision, calibration_embeddings=calibration)
    assert_same(quantize_embeddings(vectors, precision, ranges), expected)
    assert_same(quantize_embeddings(vectors, precision, ranges), st_quantize(vectors, precision, ranges=ranges))


@pytest.mark.parametrize("precision", PRECISIONS)
def test_engine_precision_is_sentence_transformers_of_its_float_vectors(embed_engine, precision):
    texts = random_documents(12, seed=5) + ["dup", "dup"]
    floats = embed_engine.encode(texts).embeddings
    result = embed_engine.encode(texts, precision=precision)
    assert_same(result.embeddings, st_quantize(floats, precision))
    assert result.meta.documents == len(texts)


def test_engine_ranges_from_calibration_work_for_a_single_query(embed_engine):
    calibration = embed_engine.encode(random_documents(20, seed=6), dimensions=16).embeddings
    ranges = quantization_ranges(calibration)
    engine = embed_engine.with_options(dimensions=16, precision="int8", ranges=ranges)  # an array: kept as tuples
    query = engine.encode(["What is the capital of China?"], is_query=True).embeddings
    floats = embed_engine.encode(["What is the capital of China?"], is_query=True, dimensions=16).embeddings
    assert_same(query, st_quantize(floats, "int8", ranges=ranges))
    assert engine.options.ranges == (tuple(ranges[0].tolist()), tuple(ranges[1].tolist()))
    binary = embed_engine.encode(["one text"], precision="ubinary", dimensions=16).embeddings
    assert binary.shape == (1, 2) and binary.dtype == np.uint8


def test_bad_precision_values_name_the_choices_and_the_fix(embed_engine):
    with pytest.raises(ValueError, match=r"precision='int4' is not supported; use one of float32, int8, uint8, binary"):
        EmbedOptions(precision="int4")
    with pytest.raises(ValueError, match=r"precision='fp8' is not supported"):
        embed_engine.encode(["a", "b"], precision="fp8")
    with pytest.raises(ValueError, match=r"one vector has none; pass ranges=quantization_ranges"):
        embed_engine.encode(["only one"], precision="uint8")
    with pytest.raises(ValueError, match=r"ranges must be 2 rows of finite floats .* got shape \(3, 2\)"):
        embed_engine.encode(["a", "b"], precision="int8", ranges=[[0, 1], [0, 1], [0, 1]])
    with pytest.raises(ValueError, match=r"ranges cover 2 dimensions but the vectors have 16"):
        embed_engine.encode(["a", "b"], precision="int8", dimensions=16, ranges=[[0, 0], [1, 1]])
    with pytest.raises(ValueError, match=r"needs at least 2 calibration vectors"):
        quantization_ranges(np.zeros((1, 4), np.float32))


def test_from_pretrained_takes_precision_and_ranges(embedder_model, embed_engine):
    floats = embed_engine.encode(random_documents(6, seed=7)).embeddings
    ranges = [floats.min(axis=0).tolist(), floats.max(axis=0).tolist()]
    engine = Qwen3EmbedEngine.from_pretrained(embedder_model, precision="uint8", ranges=ranges)
    codes = engine.encode(["only one text"]).embeddings
    expected = st_quantize(embed_engine.encode(["only one text"]).embeddings, "uint8", ranges=np.array(ranges))
    assert_same(codes, expected)
    binary = engine.encode(["a", "bb", "ccc"], precision="binary").embeddings
    assert binary.dtype == np.int8 and binary.shape == (3, (engine.hidden_size + 7) // 8)
