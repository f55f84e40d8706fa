"""Out-of-memory back-off: a pack that fails is split and retried; results and order are unchanged."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

import qwen3_rag_components.engine.forward as forward_module
import qwen3_rag_components.engine.scheduler as scheduler_module

QUERY = "what is dense retrieval?"
# 12 documents of 5 to 60 words: each fits the failing budgets below alone, all together do not.
DOCUMENTS = [" ".join(["retrieval"] * n) + f" number {n}." for n in range(5, 65, 5)]


@pytest.fixture
def fail_above(monkeypatch):
    """Make every pack forward of more than ``limit`` tokens raise ``error`` (as an allocator would)."""
    real = forward_module.packed_hidden_states
    calls: list[int] = []

    def install(limit: int, error: Exception) -> list[int]:
        def forward(model, inputs, workspace=None):
            calls.append(len(inputs.token_ids))
            if len(inputs.token_ids) > limit:
                raise error
            return real(model, inputs, workspace)

        monkeypatch.setattr(forward_module, "packed_hidden_states", forward)
        return calls

    return install


@pytest.mark.parametrize(
    "error",
    [torch.OutOfMemoryError("CUDA out of memory."), RuntimeError("DefaultCPUAllocator: can't allocate memory")],
)
def test_failed_packs_are_split_and_give_the_same_scores(rerank_engine, fail_above, caplog, error):
    documents = DOCUMENTS
    expected = rerank_engine.score_with_meta(QUERY, documents)
    calls = fail_above(300, error)
    with caplog.at_level(logging.WARNING, logger=scheduler_module.__name__):
        result = rerank_engine.score_with_meta(QUERY, documents)
    assert result.scores == pytest.approx(expected.scores, abs=1e-5)
    assert result.meta.packs > expected.meta.packs == 1
    assert max(calls) > 300 and calls[-1] <= 300
    assert len([r for r in caplog.records if "ran out of memory" in r.message]) == 1


def test_embeddings_survive_out_of_memory(embed_engine, fail_above):
    texts = DOCUMENTS
    expected = embed_engine.encode(texts).embeddings
    fail_above(150, torch.OutOfMemoryError("CUDA out of memory."))
    assert np.abs(embed_engine.encode(texts).embeddings - expected).max() <= 1e-5


def test_a_single_item_that_does_not_fit_raises_with_advice(rerank_engine, fail_above):
    fail_above(10, torch.OutOfMemoryError("CUDA out of memory."))
    with pytest.raises(torch.OutOfMemoryError) as raised:
        rerank_engine.score(QUERY, ["one document"])
    assert "does not fit in memory" in "".join(raised.value.__notes__)


def test_other_errors_are_not_retried(rerank_engine, fail_above):
    calls = fail_above(0, ValueError("not a memory problem"))
    with pytest.raises(ValueError, match="not a memory problem"):
        rerank_engine.score(QUERY, ["a", "b"])
    assert len(calls) == 1
