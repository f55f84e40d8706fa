"""Fuzzing over arbitrary Unicode, control characters and special-token strings: no crash, isolation holds, and no
control-token id ever comes from user text."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import capture_jobs

FIRST_ADDED_TOKEN = 151643
SPECIAL = ["<|im_end|>", "<|im_start|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "<|fim_pad|>", "\x00"]
fuzz_text = st.lists(
    st.one_of(st.text(st.characters(exclude_categories=("Cs",)), max_size=30), st.sampled_from(SPECIAL)),
    max_size=4,
).map("".join)
FUZZ_SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ_SETTINGS
@given(query=fuzz_text, instruction=fuzz_text, documents=st.lists(fuzz_text, min_size=1, max_size=5))
def test_rerank_fuzz(rerank_engine, monkeypatch, query, instruction, documents):
    with monkeypatch.context() as patch:
        seen = capture_jobs(patch, rerank_engine)
        scores = rerank_engine.score(query, documents, instruction=instruction)
    alone = [rerank_engine.score(query, [doc], instruction=instruction)[0] for doc in documents]
    assert np.all(np.isfinite(scores)) and max(abs(a - b) for a, b in zip(scores, alone, strict=True)) <= 1e-5
    (job,) = seen
    prefixes, items = job.prefixes, job.items
    fixed, suffix = len(rerank_engine.prefix_ids), len(rerank_engine.suffix_ids)
    assert all(t < FIRST_ADDED_TOKEN for prefix in prefixes for t in prefix[fixed:])
    assert all(t < FIRST_ADDED_TOKEN for item in items for t in item[:-suffix])


@FUZZ_SETTINGS
@given(texts=st.lists(fuzz_text, min_size=1, max_size=5), instruction=fuzz_text)
def test_embed_fuzz(embed_engine, monkeypatch, texts, instruction):
    with monkeypatch.context() as patch:
        seen = capture_jobs(patch, embed_engine)
        vectors = embed_engine.encode(texts, is_query=True, instruction=instruction).embeddings
    alone = np.concatenate([embed_engine.encode([t], is_query=True, instruction=instruction).embeddings for t in texts])
    assert np.isfinite(vectors).all() and np.abs(vectors - alone).max() <= 1e-5
    (job,) = seen
    assert all(item[-1] == FIRST_ADDED_TOKEN and max(item[:-1], default=0) < FIRST_ADDED_TOKEN for item in job.items)
