"""Embedding benchmark: Qwen3EmbedEngine against the official padded path, sentence-transformers v6's
SentenceTransformer set up as Qwen3-Embedding is and OpenVINO with int8 weights (``openvino-int8``,
:mod:`openvino_peer`), side by side in one process on the same inputs and thread count; ``ours-int8`` is our engine
with ``quantization="int8"``.

A random Qwen3-Embedding checkpoint of the real 0.6B geometry (with ``--layers`` layers) is written once into
``bench/.cache``. Workload: 300 documents of workload R's length distribution plus 100 short queries.

    python bench/embed.py --layers 4
    python bench/embed.py --layers 28 --dtype both   # every peer in fp32, then every peer in bf16
    python bench/embed.py --layers 1 --documents 30 --queries 10   # quick check while developing
    python bench/embed.py --layers 28 --peers ours --dtype float32   # ours alone
    python bench/embed.py --layers 28 --dtype float32 --documents 150 --queries 0 --peers openvino-int8 ours ours-int8
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import transformers
from transformers import AutoModel, AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

import openvino_peer
from common import (
    BENCH_DTYPES,
    WORKLOADS,
    WorkloadSpec,
    add_dtype_argument,
    bench_dtypes,
    cpu_flags,
    cpu_name,
    decoder_shape,
    dtype_json_path,
    format_ratio,
    format_table,
    int8_matmul_gflops,
    make_workload,
    matmul_gflops,
    measure,
    parse_with_peers,
    random_checkpoint,
    readout_only_savings,
    release_memory,
    useful_flops,
)
from qwen3_rag_components import Qwen3EmbedEngine
from qwen3_rag_components.testing.oracle import TASK, get_detailed_instruct, official_embeddings

QUERIES = WorkloadSpec("Q", "short queries", 100, 8, 0.4, 2, 20, seed=3)
PEER_ORDER = ("official-padded", "st-sentence-transformer", "openvino-int8", "ours", "ours-int8")

# A peer embeds (documents, queries) and returns their vectors, stacked documents first.
PeerFn = Callable[[list[str], list[str]], np.ndarray]


def official_peer(path: Path, batch_size: int, dtype: str = "float32", device: str = "cpu") -> PeerFn:
    model = AutoModel.from_pretrained(path, dtype=BENCH_DTYPES[dtype], local_files_only=True).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left", local_files_only=True)

    def embed(documents: list[str], queries: list[str]) -> np.ndarray:
        texts = documents + [get_detailed_instruct(TASK, q) for q in queries]
        return official_embeddings(model, tokenizer, texts, batch_size=batch_size).float().cpu().numpy()

    return embed


def sentence_transformer_peer(path: Path, batch_size: int, dtype: str, device: str = "cpu") -> PeerFn:
    """SentenceTransformer as Qwen3-Embedding ships it: left padding, last-token pooling, normalisation; the
    tokenizer appends <|endoftext|>; queries get the instruction as a prompt."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.base.modules import Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

    transformer = Transformer(str(path), processor_kwargs={"padding_side": "left"}, model_kwargs={"dtype": dtype})
    transformer.max_seq_length = 8192
    hidden = transformer.auto_model.config.hidden_size
    model = SentenceTransformer(modules=[transformer, Pooling(hidden, "lasttoken"), Normalize()], device=device)
    prompt = f"Instruct: {TASK}\nQuery:"

    def embed(documents: list[str], queries: list[str]) -> np.ndarray:
        docs = model.encode(documents, batch_size=batch_size, convert_to_numpy=True)
        qs = model.encode(queries, batch_size=batch_size, prompt=prompt, convert_to_numpy=True)
        return np.concatenate([docs, qs])

    return embed


def openvino_int8_peer(path: Path, batch_size: int, threads: int, notes: list[str]) -> PeerFn | None:
    """OpenVINO with NNCF int8 weights (:mod:`openvino_peer`): the official inputs, right-padded batches, the
    last-token state normalised; None (and why, in ``notes``) where OpenVINO is not installed."""
    if why := openvino_peer.missing():
        notes.append(why)
        return None
    run, note = openvino_peer.compile_int8(path, threads, None)
    notes.append(note)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)  # appends <|endoftext|>

    def embed(documents: list[str], queries: list[str]) -> np.ndarray:
        texts = documents + [get_detailed_instruct(TASK, q) for q in queries]
        ids = tokenizer(texts, truncation=True, max_length=8192)["input_ids"]
        states = openvino_peer.run_batches(run, ids, batch_size, tokenizer.pad_token_id)[0]
        return states / np.linalg.norm(states, axis=1, keepdims=True)

    return embed


def our_peer(
    path: Path, meta: dict[str, Any], dtype: str, device: str = "cpu", quantization: str | None = None
) -> PeerFn:
    engine = Qwen3EmbedEngine.from_pretrained(
        str(path), device=device, dtype=dtype, quantization=quantization, local_files_only=True
    )

    def embed(documents: list[str], queries: list[str]) -> np.ndarray:
        docs = engine.encode(documents)
        qs = engine.encode(queries, is_query=True)
        meta.update(documents=docs.meta.to_dict(), queries=qs.meta.to_dict())
        return np.concatenate([docs.embeddings, qs.embeddings])

    return embed


def load_peer(
    name: str, path: Path, args: argparse.Namespace, dtype: str, meta: dict[str, Any], notes: list[str]
) -> PeerFn | None:
    """The peer ``name``; None where it cannot run here (why: in ``notes``)."""
    if name == "official-padded":
        return official_peer(path, args.batch_size, dtype)
    if name == "st-sentence-transformer":
        return sentence_transformer_peer(path, args.batch_size, dtype)
    if name == openvino_peer.PEER:
        return openvino_int8_peer(path, args.batch_size, args.threads, notes)
    if name == "ours-int8":
        return our_peer(path, {}, dtype, quantization="int8")
    return our_peer(path, meta, dtype)


def token_lengths(path: Path, documents: list[str], queries: list[str]) -> list[int]:
    """Tokens per text as the official tokenizer makes them (<|endoftext|> included)."""
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    texts = documents + [get_detailed_instruct(TASK, q) for q in queries]
    return [len(ids) for ids in tokenizer(texts)["input_ids"]]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4, help="decoder layers of the random 0.6B-shaped checkpoint")
    parser.add_argument("--documents", type=int, default=300)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per peer (median reported)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size of the padded peers")
    parser.add_argument(
        "--json", type=Path, default=None, help="also write the results to this JSON file (<stem>-bfloat16.json too)"
    )
    add_dtype_argument(parser)
    return parse_with_peers(parser, PEER_ORDER, argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()

    path = random_checkpoint("embedder", args.layers)
    documents = make_workload(dataclasses.replace(WORKLOADS["R"], documents=args.documents, seed=4)).documents
    queries = [q.removeprefix("What is the ") for q in make_workload(QUERIES).documents][: args.queries]
    lengths = token_lengths(path, documents, queries)
    config = transformers.AutoConfig.from_pretrained(path, local_files_only=True)
    with torch.device("meta"):
        shape = decoder_shape(AutoModel.from_config(config))
    work = useful_flops(shape, 0, lengths)

    print(
        f"machine: {cpu_name()} (flags: {cpu_flags()}); torch {torch.__version__}, transformers "
        f"{transformers.__version__}; threads {torch.get_num_threads()}"
    )
    print(
        f"checkpoint: {path} — random Qwen3Model, {config.num_hidden_layers} layers, hidden {config.hidden_size}, "
        f"{shape.non_embedding_params / 1e6:.1f}M non-embedding parameters; padded peers batch size {args.batch_size}"
    )
    doc_lengths = sorted(lengths[: len(documents)])
    print(
        f"workload: {len(documents)} documents (tokens median {doc_lengths[len(doc_lengths) // 2]}, range "
        f"{doc_lengths[0]}-{doc_lengths[-1]}) + {len(queries)} queries; {sum(lengths)} tokens; useful work "
        f"{work / 1e9:.1f} GFLOP"
    )
    dtypes = bench_dtypes(args.dtype)
    # |Δ| is against the first peer's fp32 vectors in every dtype (ours is within 1e-5 of the official ones)
    reference_name = next(name for name in args.peers if not name.endswith("-int8"))
    reference = None
    if dtypes[0] != "float32":
        reference_peer = load_peer(reference_name, path, args, "float32", {}, [])
        assert reference_peer is not None, f"{reference_name} cannot run here; put another peer first"
        reference = reference_peer(documents, queries)
        release_memory()
    for dtype in dtypes:
        matmul_rate, int8_rate = matmul_gflops(BENCH_DTYPES[dtype]), int8_matmul_gflops()
        print(
            f"\n=== every peer in {dtype}; {dtype} matmul {matmul_rate:.1f} GFLOP/s (4096² F.linear, best of 3); int8 "
            f"product {int8_rate:.1f} GFLOP/s (4096² oneDNN u8×s8, best of 3)"
        )
        meta: dict[str, Any] = {}
        notes: list[str] = []
        results = {}
        for name in args.peers:
            print(f"  {name} ...", flush=True)
            peer = load_peer(name, path, args, dtype, meta, notes)
            if peer is None:
                continue
            peer(documents[:2], queries[:2])  # warm-up: lazy init, thread pool, allocator
            results[name] = measure(lambda peer=peer: peer(documents, queries), args.repeat)
            del peer
            release_memory()

        if reference is None:
            reference = results[reference_name].result
        ours = results["ours"].median_seconds
        rows, records = [], []
        for note in notes:
            print(note)
        for name in (name for name in args.peers if name in results):
            m = results[name]
            seconds = m.median_seconds
            record = {
                "peer": name,
                "seconds": seconds,
                "texts_per_s": len(lengths) / seconds,
                "tokens_per_s": sum(lengths) / seconds,
                "ours_speedup": seconds / ours,
                "utilisation": work / seconds / ((int8_rate if name.endswith("-int8") else matmul_rate) * 1e9),
                "rss_before_mb": m.rss_before_mb,
                "peak_rss_mb": m.peak_mb,
                "max_abs_delta": float(np.abs(m.result - reference).max()),
                "min_cosine": float((m.result * reference).sum(axis=1).min()),
            }
            records.append(record)
            rows.append(
                [
                    name,
                    f"{record['texts_per_s']:.1f}",
                    f"{record['tokens_per_s']:.0f}",
                    f"{seconds:.2f}",
                    format_ratio(record["ours_speedup"]),
                    f"{100 * record['utilisation']:.1f}%",
                    f"{m.rss_before_mb:.0f}",
                    f"{m.peak_mb:.0f}",
                    f"{record['max_abs_delta']:.1e}",
                    f"{record['min_cosine']:.6f}",
                ]
            )
        print(f"  ours meta: documents {meta['documents']}; queries {meta['queries']}")
        print(
            f"  ours × = peer time / ours time; util = useful FLOPs / time / {dtype} matmul rate (the *-int8 peers: / "
            "int8 product rate); peak RSS = peak "
            "during the timed call (VmHWM reset just before it); |Δ| and cosine against "
            f"{reference_name}'s fp32 vectors."
        )
        headers = ["peer", "texts/s", "tokens/s", "time (s)", "ours ×", "util", "RSS before (MB)", "peak RSS (MB)"]
        print(format_table([*headers, f"max |Δ| vs {reference_name}", "min cosine"], rows))
        executed = work - readout_only_savings(shape, 0, lengths)
        print(
            f"  ours executes {executed / 1e9:.1f} GFLOP, {executed / work:.0%} of the useful work (its last layer "
            "computes queries, o_proj and MLP at the pooled token only), so its util can exceed 100%; executed "
            f"FLOPs / time / matmul rate = {executed / ours / (matmul_rate * 1e9):.1%}"
        )
        if args.json is not None:
            report = {
                "args": {k: str(v) for k, v in vars(args).items()},
                "dtype": dtype,
                "cpu_flags": cpu_flags(),
                "matmul_gflops": matmul_rate,
                "int8_matmul_gflops": int8_rate,
                "peers": records,
                "ours_meta": meta,
            }
            dtype_json_path(args.json, dtype, dtypes).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
