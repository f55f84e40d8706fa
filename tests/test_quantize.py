"""quantization="int8": the kernel computes exactly the documented integer arithmetic, per token, and the engines
give the official code's numbers once the official model's projections do that same arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from qwen3_rag_components.engine import LoadSpec, Qwen3EmbedEngine, Qwen3RerankEngine, shared_engine
from qwen3_rag_components.engine.quantize import (
    PROJECTIONS,
    Int8Linear,
    check_quantization_device,
    quantization_of,
    quantize_model,
    quantize_tokens,
    replace_projections,
    weight_levels,
)
from qwen3_rag_components.testing.checkpoints import TINY, qwen3_config
from qwen3_rag_components.testing.oracle import official_embeddings, official_rerank_scores

QUERY = "What is the capital of China?"
# Where the official fp32 code and the packed path differ in the last bits (1e-7), a value at a rounding boundary of
# the activations' quantization may round the other way, and that step spreads through the later layers: most results
# match to 1e-6 and a few move by up to 1e-2, as int8 itself moves every one of them from fp32 by ~1e-2.
MATCHED_SHARE = 0.8


def assert_mostly_equal(got: np.ndarray, expected: np.ndarray, fp32: np.ndarray) -> None:
    """``got`` is ``expected`` but for rounding flips (see ``MATCHED_SHARE``), and int8 really ran."""
    difference = np.abs(got - expected).reshape(len(got), -1).max(1)  # per input
    assert np.median(difference) < 1e-6 and np.mean(difference < 2e-5) >= MATCHED_SHARE, difference
    assert difference.max() < 3e-2
    assert np.median(np.abs(fp32 - expected).reshape(len(got), -1).max(1)) > 1e-3  # int8 moved them: a real check


DOCUMENTS = [
    "The capital of China is Beijing.",
    "Gravity pulls objects toward each other.",
    "Beijing hosted the 2008 Olympic Games and is China's political centre.",
    "Paris is the capital of France.",
    "The capital of China is Beijing.",  # a duplicate
    "Shanghai is China's largest city by population, but not its capital.",
    *(f"Document {i}: " + " ".join(f"word{i * j % 23}" for j in range(i % 17 + 3)) for i in range(40)),
]


class EmulatedInt8Linear(nn.Module):
    """The documented arithmetic, written out in float64 from the integers (no oneDNN): per-channel symmetric int8
    weights, per-token symmetric int8 activations, exact integer sums, both scales applied at the end."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()  # [out, in]
        levels = weight_levels()  # 127, or 63 on CPUs whose kernel saturates (a fact of this machine, measured)
        scale = weight.abs().amax(1).clamp_min(torch.finfo(torch.float32).tiny) / levels  # [out] fp32, as documented
        # The integers as the documented fp32 division rounds them (a double division would round a value that sits
        # on a .5 boundary in fp32 the other way); from there on, float64 is exact.
        self.quantized = torch.round(weight / scale[:, None]).clamp(-levels, levels).double()  # [out, in] integers
        self.weight_scale = scale.double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.abs().amax(-1, keepdim=True).float().clamp_min(torch.finfo(torch.float32).tiny) / 127  # [..., 1]
        integers = torch.round(x.float() / scale).double()  # [..., in] in -127..127
        return ((integers @ self.quantized.T) * scale.double() * self.weight_scale).to(x.dtype)


def emulate_int8(model: nn.Module) -> nn.Module:
    replace_projections(model, EmulatedInt8Linear)
    return model


def reference_product(linear: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return EmulatedInt8Linear(linear)(x)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 40),
    in_features=st.integers(1, 96),
    out_features=st.integers(1, 80),
    outlier_row=st.integers(0, 39),
    outlier=st.sampled_from([0.0, 1.0, 1e3]),
    seed=st.integers(0, 2**16),
)
def test_int8_linear_is_the_integer_arithmetic_per_token(
    rows: int, in_features: int, out_features: int, outlier_row: int, outlier: float, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=False)
    linear.weight.data = torch.randn(out_features, in_features, generator=generator) * 0.05
    x = torch.randn(rows, in_features, generator=generator)
    x[outlier_row % rows] *= outlier  # an all-zero row (padding), an ordinary one, or one a thousand times larger
    quantized = Int8Linear(linear)
    out = torch.full((rows, out_features), float("nan"))
    got = quantized.project(x, out)
    assert got.data_ptr() == out.data_ptr()
    torch.testing.assert_close(got, reference_product(linear, x), rtol=1e-5, atol=1e-6)
    # Per token: a row's result does not depend on the other rows of the call, however large they are.
    for row in {0, outlier_row % rows, rows - 1}:
        torch.testing.assert_close(quantized(x[row : row + 1])[0], got[row], rtol=1e-6, atol=1e-7)


def test_a_quantized_input_gives_what_the_tensor_gives() -> None:
    linear = nn.Linear(48, 20, bias=False)
    x = torch.randn(7, 48)
    tokens = quantize_tokens(x)  # once for q, k and v (or gate and up)
    assert tokens.activations.dtype == torch.uint8 and tokens.scale.shape == (7, 1)
    quantized = Int8Linear(linear)
    torch.testing.assert_close(quantized.project(tokens, torch.empty(7, 20)), quantized(x), rtol=0, atol=0)
    torch.testing.assert_close(
        (tokens.activations.float() - 128) * tokens.scale, x, atol=float(tokens.scale.max()) / 2, rtol=0
    )


def test_int8_linear_keeps_the_model_dtype_and_the_bias() -> None:
    linear = nn.Linear(32, 24, bias=True)
    x = torch.randn(5, 3, 32)
    quantized = Int8Linear(linear)
    expected = reference_product(linear, x) + linear.bias.detach()
    torch.testing.assert_close(quantized(x), expected, rtol=1e-5, atol=1e-5)
    bf16 = Int8Linear(linear.to(torch.bfloat16))
    assert bf16(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_int8_rerank_scores_are_the_official_code_with_int8_projections(reranker_model: str) -> None:
    official = emulate_int8(AutoModelForCausalLM.from_pretrained(reranker_model, dtype=torch.float32).eval())
    tokenizer = AutoTokenizer.from_pretrained(reranker_model, padding_side="left")
    expected = official_rerank_scores(official, tokenizer, QUERY, DOCUMENTS)
    engine = Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu", dtype="float32", quantization="int8")
    result = engine.score_with_meta(QUERY, DOCUMENTS)
    fp32 = Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu", dtype="float32").score(QUERY, DOCUMENTS)
    assert_mostly_equal(np.array(result.scores), np.array(expected), np.array(fp32))
    assert result.meta.quantization == "int8"
    assert engine.quantization == "int8" and quantization_of(engine.model) == "int8"


def test_int8_embeddings_are_the_official_code_with_int8_projections(embedder_model: str) -> None:
    texts = [QUERY, *DOCUMENTS]
    official = emulate_int8(AutoModel.from_pretrained(embedder_model, dtype=torch.float32).eval())
    tokenizer = AutoTokenizer.from_pretrained(embedder_model, padding_side="left")
    expected = official_embeddings(official, tokenizer, texts).numpy()
    engine = Qwen3EmbedEngine.from_pretrained(embedder_model, device="cpu", dtype="float32", quantization="int8")
    result = engine.embed_documents_with_meta(texts)
    fp32 = Qwen3EmbedEngine.from_pretrained(embedder_model, device="cpu", dtype="float32").embed_documents(texts)
    assert_mostly_equal(result.embeddings, expected, fp32)
    assert result.meta.quantization == "int8"


def test_int8_replaces_the_seven_projections_of_every_layer_but_the_first_and_nothing_else(
    reranker_model: str,
) -> None:
    engine = Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu", dtype="float32", quantization="int8")
    assert len(engine.model.layers) > 1
    quantized = [name for name, module in engine.model.named_modules() if isinstance(module, Int8Linear)]
    expected = [f"layers.{i}.{path}" for i in range(1, len(engine.model.layers)) for path in PROJECTIONS]
    assert sorted(quantized) == sorted(expected)
    kept = [name for name, module in engine.model.named_modules() if isinstance(module, nn.Linear)]
    assert sorted(kept) == sorted(f"layers.0.{path}" for path in PROJECTIONS)
    assert {module.weight.dtype for module in engine.model.layers[0].modules() if isinstance(module, nn.Linear)} == {
        torch.float32
    }
    assert engine.model.embed_tokens.weight.dtype == torch.float32
    # The parameters left own their memory: no view keeps the checkpoint's memory-mapped file alive.
    assert all(p.untyped_storage().nbytes() == p.nbytes for p in engine.model.parameters())


@pytest.mark.parametrize(("layers", "kept"), [(1, []), (2, [0]), (3, [0])])
def test_only_a_one_layer_model_quantizes_its_first_layer(layers: int, kept: list[int]) -> None:
    model = AutoModel.from_config(qwen3_config(TINY.with_layers(layers), tie_word_embeddings=False)).eval()
    quantize_model(model)
    assert [i for i, layer in enumerate(model.layers) if isinstance(layer.mlp.down_proj, nn.Linear)] == kept
    assert quantization_of(model) == "int8"


def test_the_engine_cache_keeps_int8_apart(reranker_model: str) -> None:
    plain = shared_engine(Qwen3RerankEngine, LoadSpec(reranker_model, "cpu", "float32"))
    int8 = shared_engine(Qwen3RerankEngine, LoadSpec(reranker_model, "cpu", "float32", quantization="int8"))
    assert plain.quantization is None and int8.quantization == "int8"
    assert int8 is shared_engine(Qwen3RerankEngine, LoadSpec(reranker_model, "cpu", "float32", quantization="int8"))


@pytest.mark.parametrize("bad", ["int4", "INT8", "fp8", 8, True])
def test_an_unknown_quantization_names_the_choices(reranker_model: str, bad: object) -> None:
    with pytest.raises(ValueError, match=r"quantization=.* is not supported; use one of \['int8'\]"):
        Qwen3RerankEngine.from_pretrained(reranker_model, quantization=bad)  # type: ignore[arg-type]


def test_int8_off_the_cpu_says_what_to_use(reranker_model: str) -> None:
    with pytest.raises(ValueError, match=r"quantization='int8' runs on CPUs only .* on device 'cuda' use"):
        check_quantization_device("int8", torch.device("cuda"))
    with pytest.raises(ValueError, match=r"runs on CPUs only .* on device 'meta'"):  # resolved before any load
        Qwen3EmbedEngine.from_pretrained(reranker_model, device="meta", quantization="int8")
