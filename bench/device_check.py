"""Check a device in a few minutes: fidelity of both dtypes against the official fp32 code, speed against
sentence-transformers in the device's default dtype, and (CUDA) the peak memory of one pack of 1, 2k and 8k tokens, on
random checkpoints of the real 0.6B geometry.

    python bench/device_check.py --device cuda               # 28 layers, 100 passages, 150 texts; < 5 min on a GPU
    python bench/device_check.py --device cpu --layers 2 --documents 10

Checks (exit code 1 when one fails): the engine in fp32 within 1e-5 of the official fp32 scores and vectors; in bf16
scores within 2e-2 (``--bf16-score-bound``) and vectors at cosine >= 0.999; a pack's memory above the weights growing
linearly with its tokens (8k tokens at most 6x 2k's: a score matrix would make it 16x). Speed is a side-by-side ratio
(best of ``--repeat``), no target.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common`, `rerank` sit next to this script

from common import WORKLOADS, cpu_flags, cpu_name, make_workload, random_checkpoint, release_memory
from embed import QUERIES, official_peer, our_peer, sentence_transformer_peer
from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine
from qwen3_rag_components.engine.attention import uses_flex
from qwen3_rag_components.engine.forward import build_pack_inputs, packed_hidden_states
from qwen3_rag_components.engine.meta import dtype_name
from qwen3_rag_components.engine.placement import choose_dtype
from qwen3_rag_components.testing.oracle import official_rerank_scores
from rerank import with_chat_template

# bounds below fp32's: the bf16 ones are the issue's targets, the fp16 ones tests/test_precision.py's
SCORE_BOUNDS = {"float32": 1e-5, "float16": 5e-3}
MIN_COSINE = {"float32": 1 - 1e-6, "bfloat16": 0.999, "float16": 0.9999}


def best_seconds(call: Callable[[], Any], repeat: int, device: torch.device) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} (flags: {cpu_flags()})"


def check_rerank(args: argparse.Namespace, device: torch.device, dtypes: list[str], fast: str) -> list[str]:
    path = with_chat_template(args.reranker or random_checkpoint("reranker", args.layers))
    workload = make_workload(WORKLOADS["R"], args.documents)
    query, documents = workload.query, workload.documents
    official = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, local_files_only=True).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    reference = official_rerank_scores(official, tokenizer, query, documents, batch_size=args.batch_size)
    # what bf16 rounding alone costs: the official code itself in bf16, against its fp32 scores
    official_bf16 = official_rerank_scores(
        official.to(torch.bfloat16), tokenizer, query, documents, batch_size=args.batch_size
    )
    del official
    release_memory()
    official_delta = max(abs(a - b) for a, b in zip(official_bf16, reference, strict=True))
    lines, failures = [f"rerank official code in bfloat16: max |Δ| vs official fp32 {official_delta:.1e}"], []
    for dtype in dtypes:
        engine = Qwen3RerankEngine.from_pretrained(str(path), device=device, dtype=dtype, local_files_only=True)
        delta = max(abs(a - b) for a, b in zip(engine.score(query, documents), reference, strict=True))
        bound = SCORE_BOUNDS.get(dtype, args.bf16_score_bound)
        verdict = "ok" if delta <= bound else "FAILED"
        lines.append(f"rerank {dtype}: max |Δ| vs official fp32 {delta:.1e} (bound {bound:g}) {verdict}")
        if verdict != "ok":
            failures.append(lines[-1])
        if dtype == fast:
            engine.score(query, documents[:2])  # warm-up
            ours = best_seconds(lambda engine=engine: engine.score(query, documents), args.repeat, device)
        del engine
        release_memory()
    from sentence_transformers import CrossEncoder

    peer = CrossEncoder(str(path), device=str(device), local_files_only=True, model_kwargs={"dtype": fast})
    pairs = [(query, d) for d in documents]
    peer.predict(pairs[:2], batch_size=args.batch_size, show_progress_bar=False)
    theirs = best_seconds(
        lambda: peer.predict(pairs, batch_size=args.batch_size, show_progress_bar=False), args.repeat, device
    )
    lines.append(
        f"rerank speed in {fast}, 1 query + {len(documents)} passages: ours {ours:.2f} s "
        f"({len(documents) / ours:.0f} docs/s), sentence-transformers CrossEncoder {theirs:.2f} s "
        f"({len(documents) / theirs:.0f} docs/s): ours x{theirs / ours:.2f}"
    )
    print("\n".join(lines), flush=True)
    return failures


def check_embed(args: argparse.Namespace, device: torch.device, dtypes: list[str], fast: str) -> list[str]:
    """bench/embed.py's peers on ``device``: ``args.texts`` distinct documents and a tenth as many queries."""
    path = args.embedder or random_checkpoint("embedder", args.layers)
    documents = make_workload(dataclasses.replace(WORKLOADS["R"], documents=args.texts, seed=4)).documents
    queries = [q.removeprefix("What is the ") for q in make_workload(QUERIES).documents][: max(1, args.texts // 10)]
    reference = official_peer(path, args.batch_size, "float32", str(device))(documents, queries)
    release_memory()
    lines, failures = [], []
    for dtype in dtypes:
        embed = our_peer(path, {}, dtype, str(device))
        vectors = embed(documents, queries)
        delta, cosine = float(np.abs(vectors - reference).max()), float((vectors * reference).sum(axis=1).min())
        verdict = "ok" if cosine >= MIN_COSINE[dtype] and (dtype != "float32" or delta <= 1e-5) else "FAILED"
        lines.append(f"embed {dtype}: max |Δ| {delta:.1e}, min cosine {cosine:.6f} vs official fp32 {verdict}")
        if verdict != "ok":
            failures.append(lines[-1])
        if dtype == fast:
            ours = best_seconds(lambda embed=embed: embed(documents, queries), args.repeat, device)
        del embed
        release_memory()
    peer = sentence_transformer_peer(path, args.batch_size, fast, str(device))
    peer(documents[:2], queries[:1])  # warm-up
    theirs = best_seconds(lambda: peer(documents, queries), args.repeat, device)
    lines.append(
        f"embed speed in {fast}, {len(documents)} documents + {len(queries)} queries: ours {ours:.2f} s "
        f"({len(documents) / ours:.0f} docs/s), SentenceTransformer {theirs:.2f} s "
        f"({len(documents) / theirs:.0f} docs/s): ours x{theirs / ours:.2f}"
    )
    print("\n".join(lines), flush=True)
    return failures


MEMORY_TOKENS = (1, 2048, 8192)
MAX_GROWTH = 6.0  # peak extra memory of 8k tokens over 2k tokens: 4 if linear, 16 with [H, T, T] scores


def check_memory(args: argparse.Namespace, device: torch.device, dtype: str) -> list[str]:
    """One embedding-style pack (a single row of T tokens: the longest attention) per size: the device's allocation
    peak above the loaded weights, against the [H, T, T] fp32 score matrix a materialising attention would add."""
    if device.type != "cuda":
        print("attention memory: measured on CUDA only", flush=True)
        return []
    engine = Qwen3EmbedEngine.from_pretrained(
        str(args.embedder or random_checkpoint("embedder", args.layers)), device=device, dtype=dtype
    )
    heads = engine.model.config.num_attention_heads
    lines, extra = [f"attention: {'FlexAttention' if uses_flex(device) else 'SDPA buckets'}, {dtype}"], {}
    for tokens in MEMORY_TOKENS:
        inputs = build_pack_inputs([((), [list(range(100, 100 + tokens))])], device)
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        packed_hidden_states(engine.model, inputs)
        torch.cuda.synchronize(device)
        extra[tokens] = torch.cuda.max_memory_allocated(device) - base
        scores = heads * tokens * tokens * 4
        lines.append(
            f"pack of {tokens} tokens: peak {extra[tokens] / 2**20:.1f} MiB above the weights "
            f"({extra[tokens] / tokens / 1024:.1f} KiB/token; one fp32 score matrix would be {scores / 2**20:.1f} MiB)"
        )
    growth = extra[MEMORY_TOKENS[2]] / extra[MEMORY_TOKENS[1]]
    verdict = "ok" if growth <= MAX_GROWTH else "FAILED"
    lines.append(f"memory growth 8k / 2k tokens: x{growth:.2f} (linear: x4, bound x{MAX_GROWTH:g}) {verdict}")
    print("\n".join(lines), flush=True)
    return [] if verdict == "ok" else [lines[-1]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--layers", type=int, default=28, help="layers of the random 0.6B-shaped checkpoints")
    parser.add_argument("--documents", type=int, default=100, help="passages reranked (workload R)")
    parser.add_argument("--texts", type=int, default=150, help="documents embedded (and a tenth as many queries)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of the official and peer paths")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs per speed measurement (best reported)")
    parser.add_argument(
        "--bf16-score-bound", type=float, default=2e-2, help="max |Δ| of bf16 scores from the official fp32 ones"
    )
    parser.add_argument(
        "--reranker", type=Path, default=None, help="a random reranker folder (its chat template gets written)"
    )
    parser.add_argument("--embedder", type=Path, default=None, help="a random embedder folder instead of the 0.6B one")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    device = torch.device(args.device)
    fast, why = choose_dtype(None, device)
    dtypes = list(dict.fromkeys(["float32", "bfloat16", dtype_name(fast)]))  # fidelity of each; speed in the default
    print(f"device: {device} — {device_name(device)}; torch {torch.__version__}")
    print(f"default dtype: {dtype_name(fast)} ({why})")
    start = time.perf_counter()
    failures = check_rerank(args, device, dtypes, dtype_name(fast))
    failures += check_embed(args, device, dtypes, dtype_name(fast))
    failures += check_memory(args, device, dtype_name(fast))
    print(f"total {time.perf_counter() - start:.0f} s; {'FAILED: ' + '; '.join(failures) if failures else 'all ok'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
