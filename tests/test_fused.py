"""The compiled per-token steps of bf16 and fp16 (engine/fused.py): each rounds once, at its output, where the eager
steps round every intermediate; fp32 never uses them; packs of other sizes reuse the compiled code; a failed compile
leaves the eager steps with one warning and the same results as ``$QWEN3_RAG_COMPILE=0``."""

from __future__ import annotations

import logging

import pytest
import torch
from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

from qwen3_rag_components import Qwen3RerankEngine
from qwen3_rag_components.engine import forward, fused
from qwen3_rag_components.engine.forward import EagerSteps

from .texts import random_documents

HALF = [torch.bfloat16, torch.float16]
TOKENS, HEADS, HEAD_DIM, WIDTH = 37, 4, 16, 48


def random(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def rms_norm_64(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return weight * x / (x.square().mean(-1, keepdim=True) + 1e-6).sqrt()


def expected_steps(dtype: torch.dtype) -> dict[str, tuple[tuple, torch.Tensor]]:
    """Each step's inputs (in ``dtype``) and its result computed in fp64 from those same inputs."""
    x = random(TOKENS, WIDTH, seed=1).to(dtype)
    heads = random(TOKENS, HEADS, HEAD_DIM, seed=2).to(dtype)
    angles = random(TOKENS, HEAD_DIM // 2, seed=3)
    cos, sin = (torch.cat((f(angles), f(angles)), dim=-1).to(dtype) for f in (torch.cos, torch.sin))
    gate, up = random(TOKENS, WIDTH, seed=4).to(dtype), random(TOKENS, WIDTH, seed=5).to(dtype)
    own, prefix = random(TOKENS, HEADS, HEAD_DIM, seed=6).to(dtype), random(TOKENS, HEADS, HEAD_DIM, seed=7).to(dtype)
    lse, prefix_lse = random(TOKENS, HEADS, seed=8).float(), random(TOKENS, HEADS, seed=9).float()

    norm, head_norm = Qwen3RMSNorm(WIDTH, eps=1e-6).to(dtype), Qwen3RMSNorm(HEAD_DIM, eps=1e-6).to(dtype)
    norm.weight.data = random(WIDTH, seed=10).to(dtype)
    head_norm.weight.data = random(HEAD_DIM, seed=11).to(dtype)

    normed = rms_norm_64(heads.double(), head_norm.weight.double())
    half = HEAD_DIM // 2
    rotated = torch.cat((-normed[..., half:], normed[..., :half]), dim=-1)
    share = torch.sigmoid(prefix_lse.double() - lse.double())[..., None]
    added = random(TOKENS, WIDTH, seed=12).to(dtype)
    return {
        "norm": ((norm, x), rms_norm_64(x.double(), norm.weight.double())),
        "add_norm": ((norm, x, added), rms_norm_64(x.double() + added.double(), norm.weight.double())),
        "norm_rope": ((head_norm, heads, cos, sin), normed * cos.double()[:, None] + rotated * sin.double()[:, None]),
        "swiglu": ((gate,), torch.nn.functional.silu(gate.double()) * up.double()),
        "merge": ((own, lse, prefix, prefix_lse), own.double() * (1 - share) + prefix.double() * share),
    }


def run_step(steps: object, name: str, inputs: tuple, dtype: torch.dtype) -> torch.Tensor:
    if name == "swiglu":
        gate = inputs[0].clone()
        steps.swiglu(gate, random(TOKENS, WIDTH, seed=5).to(dtype))
        return gate
    if name == "merge":
        out = inputs[0].clone()
        steps.merge(out, *inputs[1:])
        return out
    if name == "add_norm":
        norm, x, added = inputs
        residual = x.clone()
        normed = steps.add_norm(norm, residual, added, torch.empty_like(x))
        assert torch.equal(residual, (x.double() + added.double()).to(x.dtype))  # the sum, rounded once
        return normed
    out = torch.empty_like(inputs[1])
    getattr(steps, name)(*inputs, out)
    return out


@pytest.mark.parametrize("dtype", HALF, ids=str)
@pytest.mark.parametrize("name", ["norm", "add_norm", "norm_rope", "swiglu", "merge"])
def test_each_fused_step_rounds_once(dtype, name):
    """Within half a unit in the last place (plus fp32's own error) of the exact result of its inputs, which the
    eager steps, rounding each intermediate, are not."""
    inputs, exact = expected_steps(dtype)[name]
    with torch.inference_mode():
        result = run_step(fused.FusedSteps(), name, inputs, dtype).double()
        eager = run_step(
            EagerSteps(torch.empty(TOKENS * WIDTH * HEADS), torch.empty(TOKENS * WIDTH, dtype=dtype)),
            name,
            inputs,
            dtype,
        ).double()
    unit = torch.finfo(dtype).eps  # spacing of values in [1, 2)
    bound = unit / 2 * exact.abs() + 1e-5 * (1 + exact.abs())
    assert result.dtype == exact.dtype and ((result - exact).abs() <= bound).all()
    eager_rounds_once = ((eager - exact).abs() <= bound).all()
    assert eager_rounds_once if name == "merge" else not eager_rounds_once  # the eager merge is fp32, rounded once


def test_fp32_and_the_switch_keep_the_eager_steps(reranker_paths, monkeypatch):
    model = Qwen3RerankEngine.from_pretrained(str(reranker_paths["untied"]), device="cpu").model
    assert fused.fused_steps(model) is None  # fp32: the exact path
    bf16 = Qwen3RerankEngine.from_pretrained(str(reranker_paths["untied"]), device="cpu", dtype="bfloat16").model
    assert isinstance(fused.fused_steps(bf16), fused.FusedSteps)
    monkeypatch.setenv(fused.COMPILE_VARIABLE, "0")
    assert fused.fused_steps(bf16) is None


def test_packs_of_other_sizes_reuse_the_compiled_steps(reranker_paths, monkeypatch):
    """Packs of 1, 7 and 40 documents, and a pack cut into several chunks (views at other offsets), add no graph."""
    engine = Qwen3RerankEngine.from_pretrained(str(reranker_paths["tied"]), device="cpu", dtype="bfloat16")
    documents = random_documents(40, seed=5)
    engine.score("first call", documents[:3])
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for count in (1, 7, 40):
        engine.score("a query of another length than the first", documents[:count])
    config = engine.model.config
    monkeypatch.setattr(forward, "CHUNK_BYTES", 100 * config.intermediate_size * 2)  # 100 rows, padded to 128
    assert forward.token_chunks(engine.model, 448) == [slice(0, 128), slice(128, 256), slice(256, 384), slice(384, 448)]
    assert sum(map(len, engine.text.plain_ids(documents))) > 3 * 128  # so this pack is cut into several chunks
    engine.score("a query of another length than the first", documents)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs


def test_loading_logs_the_compile_time(reranker_paths, monkeypatch, caplog):
    monkeypatch.setattr(fused, "_steps", {})
    monkeypatch.setattr(fused, "_compiled", set())
    with caplog.at_level(logging.INFO, logger=fused.__name__):
        Qwen3RerankEngine.from_pretrained(str(reranker_paths["tied"]), device="cpu", dtype="bfloat16")
    [record] = caplog.records
    assert record.getMessage().startswith("compiled the per-token steps for bfloat16 on cpu in ")


@pytest.mark.parametrize("failing", ["torch.compile", "the compiled code"])
def test_a_failed_compile_runs_the_eager_steps(reranker_paths, monkeypatch, caplog, failing):
    """Whether torch.compile refuses at once (an unsupported Python) or at the first run (no C++ compiler)."""
    path, documents = str(reranker_paths["tied"]), random_documents(12, seed=6)
    monkeypatch.setenv(fused.COMPILE_VARIABLE, "0")
    eager_scores = Qwen3RerankEngine.from_pretrained(path, device="cpu", dtype="bfloat16").score("q", documents)
    monkeypatch.delenv(fused.COMPILE_VARIABLE)

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    monkeypatch.setattr(fused, "_steps", {})
    monkeypatch.setattr(fused, "_compiled", set())
    if failing == "torch.compile":
        monkeypatch.setattr(torch, "compile", no_compiler)
    else:
        monkeypatch.setattr(fused.FusedSteps, "norm", no_compiler)
    with caplog.at_level(logging.WARNING, logger=fused.__name__):
        engine = Qwen3RerankEngine.from_pretrained(path, device="cpu", dtype="bfloat16")
    [record] = caplog.records
    assert "failed for bfloat16 on cpu (RuntimeError: InvalidCxxCompiler: No working C++ compiler found)" in (
        record.getMessage()
    )
    assert fused.fused_steps(engine.model) is None
    assert engine.score("q", documents) == eager_scores
