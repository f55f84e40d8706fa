"""Rerank benchmark: Qwen3RerankEngine against the official per-pair path, sentence-transformers' CrossEncoder and the
dense-mask packed path, side by side in one process on the same inputs and thread count.

A random tied reranker of the real Qwen3-Reranker-0.6B geometry (with ``--layers`` layers) is written once into
``bench/.cache``. Every peer's scores are compared with the official model-card computation.

    python bench/rerank.py --layers 4
    python bench/rerank.py --layers 1 --workload S --max-docs 20   # quick check while developing
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

from common import (  # noqa: E402
    WORKLOADS,
    DecoderShape,
    Measurement,
    Workload,
    cpu_name,
    decoder_shape,
    format_ratio,
    format_table,
    make_workload,
    matmul_gflops,
    measure,
    release_memory,
    useful_flops,
)

from qwen3_rag_components.engine.packing import plan_packs  # noqa: E402
from qwen3_rag_components.engine.rerank import DEFAULT_MAX_TOKENS_PER_PACK, Qwen3RerankEngine  # noqa: E402
from qwen3_rag_components.testing import QWEN3_0_6B, write_reranker_checkpoint  # noqa: E402

CACHE_DIR = Path(__file__).resolve().parent / ".cache"
OFFICIAL_MAX_LENGTH = 8192

# The official prompt (Qwen3-Reranker model card).
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"

# sentence-transformers v6 renders a (query, document) pair through the checkpoint's chat template as the messages
# [{"role": "query", ...}, {"role": "document", ...}] (plain-string content: the template avoids the patterns that make
# it switch to list-of-parts content), and CrossEncoder.predict(prompt=...) prepends a {"role": "system", ...} message:
# it becomes the instruction. transformers renders with trim_blocks/lstrip_blocks and drops one trailing newline,
# hence the extra blank line after the suffix's "\n\n".
CHAT_TEMPLATE = (
    "{#- Qwen3-Reranker prompt; a system message (CrossEncoder prompt=) replaces the instruction. -#}\n"
    f'{{%- set ns = namespace(instruction="{INSTRUCTION}") -%}}\n'
    '{%- for message in messages if message.role == "system" -%}{%- set ns.instruction = message.content -%}'
    "{%- endfor -%}\n"
    f"{PREFIX}"
    "<Instruct>: {{ ns.instruction }}\n"
    '<Query>: {{ (messages | selectattr("role", "eq", "query") | first).content }}\n'
    '<Document>: {{ (messages | selectattr("role", "eq", "document") | first).content }}'
    f"{SUFFIX}\n"
)

PEER_ORDER = ("official-vocab", "official-last", "st-crossencoder", "dense-mask-packed", "ours")

# A peer scores (query, documents) and may return extra facts about the run (packs, meta).
PeerFn = Callable[[str, list[str]], tuple[list[float], dict[str, Any]]]


# ------------------------------------------------------------------------------------------------ checkpoint


def ensure_checkpoint(layers: int) -> Path:
    """The random tied reranker of the 0.6B geometry with ``layers`` layers, written once, plus the chat template."""
    path = CACHE_DIR / f"reranker-L{layers}"
    if not (path / "model.safetensors").exists():
        print(f"writing a random {layers}-layer Qwen3-Reranker-0.6B-shaped checkpoint to {path} ...", flush=True)
        write_reranker_checkpoint(path, geometry=QWEN3_0_6B.with_layers(layers), tied=True, seed=0)
    template = path / "chat_template.jinja"
    if not template.exists() or template.read_text() != CHAT_TEMPLATE:
        template.write_text(CHAT_TEMPLATE)
    return path


def load_causal_lm(path: Path) -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).eval()


# ------------------------------------------------------------------------------------------------ official path


def official_body(query: str, document: str, instruction: str = INSTRUCTION) -> str:
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"


def official_ids(
    tokenizer: PreTrainedTokenizerBase, query: str, documents: list[str], instruction: str = INSTRUCTION
) -> list[list[int]]:
    """Model-card token ids per pair, unpadded: prefix + body (truncated from its end) + suffix."""
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    bodies = tokenizer(
        [official_body(query, d, instruction) for d in documents],
        truncation="longest_first",
        max_length=OFFICIAL_MAX_LENGTH - len(prefix) - len(suffix),
    )["input_ids"]
    return [prefix + body + suffix for body in bodies]


def yes_probability(logits: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> list[float]:
    """softmax([logit_no, logit_yes])[yes] per row of ``logits`` [N, V], as the model card computes it."""
    yes, no = tokenizer.convert_tokens_to_ids("yes"), tokenizer.convert_tokens_to_ids("no")
    pair = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
    return torch.log_softmax(pair, dim=1)[:, 1].exp().tolist()


@torch.inference_mode()
def official_scores(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    query: str,
    documents: list[str],
    *,
    batch_size: int,
    last_only: bool,
) -> list[float]:
    """The model-card loop: batches in input order, left padding; ``last_only`` asks for last-position logits only."""
    tokenizer.padding_side = "left"
    scores: list[float] = []
    for start in range(0, len(documents), batch_size):
        ids = official_ids(tokenizer, query, documents[start : start + batch_size])
        inputs = tokenizer.pad({"input_ids": ids}, padding=True, return_tensors="pt")
        extra = {"logits_to_keep": 1} if last_only else {}
        logits = model(**inputs, **extra).logits[:, -1, :]  # [B, V]
        scores.extend(yes_probability(logits, tokenizer))
    return scores


# ------------------------------------------------------------------------------------------------ dense-mask packed


def split_query_part(tokenizer: PreTrainedTokenizerBase, query: str, full_ids: list[list[int]]) -> int:
    """Length of the shared query part (prefix + body up to ``<Document>:``) inside the official per-pair ids.

    Qwen's pre-tokenizer always ends a pre-token at that colon, so every pair starts with exactly these tokens.
    """
    head = PREFIX + f"<Instruct>: {INSTRUCTION}\n<Query>: {query}\n<Document>:"
    shared = tokenizer.encode(head, add_special_tokens=False)
    if any(ids[: len(shared)] != shared for ids in full_ids):
        raise RuntimeError("the official ids of some pair do not start with the shared query part")
    return len(shared)


def dense_mask_inputs(prefix: list[int], items: list[list[int]]) -> tuple[torch.Tensor, ...]:
    """[prefix ; item 1 ; item 2 ; ...] with a dense T×T additive mask: each item sees the prefix and itself, causally."""
    ids = prefix + [t for item in items for t in item]
    segment = torch.tensor([0] * len(prefix) + [k + 1 for k, item in enumerate(items) for _ in item])  # [T]
    positions = list(range(len(prefix))) + [len(prefix) + i for item in items for i in range(len(item))]
    index = torch.arange(len(ids))
    causal = index[None, :] <= index[:, None]  # [T, T] (query, key)
    visible = causal & ((segment[None, :] == 0) | (segment[None, :] == segment[:, None]))
    mask = torch.zeros(len(ids), len(ids)).masked_fill_(~visible, torch.finfo(torch.float32).min)
    ends = torch.cumsum(torch.tensor([len(item) for item in items]), 0) + len(prefix) - 1  # each item's last token
    return torch.tensor([ids]), torch.tensor([positions]), mask[None, None], ends


@torch.inference_mode()
def dense_mask_scores(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, query: str, documents: list[str], *, max_tokens: int
) -> tuple[list[float], dict[str, Any]]:
    """Packs of [query part ; documents...] under ``max_tokens``, the query part recomputed in every pack, through
    the full transformers model with a custom 4-D float mask (passed through as is) and vocabulary-wide logits."""
    full = official_ids(tokenizer, query, documents)
    split = split_query_part(tokenizer, query, full)
    prefix, items = full[0][:split], [ids[split:] for ids in full]
    plan = plan_packs([split], [0] * len(items), [len(i) for i in items], max_tokens=max_tokens)
    scores = [0.0] * len(items)
    for pack in plan:
        members = pack.groups[0].items
        input_ids, position_ids, mask, ends = dense_mask_inputs(prefix, [items[i] for i in members])
        logits = model(input_ids=input_ids, position_ids=position_ids, attention_mask=mask, use_cache=False).logits
        for i, score in zip(members, yes_probability(logits[0, ends], tokenizer), strict=True):
            scores[i] = score
    return scores, {"packs": len(plan), "tokens": sum(p.num_tokens for p in plan)}
