"""How far ``quantization="int8"`` moves scores and vectors from fp32, on any checkpoint: check your own before you
deploy int8 (random weights say nothing about a trained model's ranking).

Reranking: workload R (1 query + 100 passages, seeded) scored in fp32 and in int8: max and mean |Δ| of P(yes), the
Spearman correlation of the two rankings, and how many of the fp32 top 10 are in the int8 top 10. Embedding: workload
R's passages (``--texts``) in fp32 and int8: cosine of each int8 vector to its fp32 one (mean and min). The bars of
issue #27 are printed beside the numbers; ``--dtype bfloat16`` compares bf16 the same way, for scale.

    python bench/quant_fidelity.py --layers 28                       # random 0.6B-geometry checkpoints
    python bench/quant_fidelity.py --reranker Qwen/Qwen3-Reranker-0.6B --embedder Qwen/Qwen3-Embedding-0.6B
    python bench/quant_fidelity.py --reranker ./my-reranker --workload-file queries.jsonl  # your own data
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `common` sits next to this script

from common import WORKLOADS, cpu_flags, cpu_name, make_workload, random_checkpoint
from qwen3_rag_components.engine import Qwen3EmbedEngine, Qwen3RerankEngine

BARS = {"spearman": 0.98, "top10": 9, "mean_cosine": 0.99}


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr  # scipy comes with sentence-transformers (the bench extra)

    return float(spearmanr(a, b).statistic)


def rerank_fidelity(reference: list[float], candidate: list[float], top: int = 10) -> dict[str, float]:
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    delta = np.abs(a - b)
    overlap = len(set(np.argsort(-a)[:top]) & set(np.argsort(-b)[:top]))
    return {"max_abs_delta": float(delta.max()), "mean_abs_delta": float(delta.mean()), "spearman": spearman(a, b),
            "top10": overlap}  # fmt: skip


def embed_fidelity(
    reference: np.ndarray | list[list[float]], candidate: np.ndarray | list[list[float]]
) -> dict[str, float]:
    a, b = np.asarray(reference, dtype=np.float64), np.asarray(candidate, dtype=np.float64)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"mean_cosine": float(cosine.mean()), "min_cosine": float(cosine.min())}


def load_workload(args: argparse.Namespace) -> tuple[str, list[str]]:
    if args.workload_file is None:
        workload = make_workload(WORKLOADS["R"], args.passages)
        return workload.query, workload.documents
    record = json.loads(Path(args.workload_file).read_text(encoding="utf-8").splitlines()[0])
    return record["query"], record["documents"]


def variants(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The loads compared with fp32, by name."""
    return {
        "int8": {"dtype": "float32", "quantization": "int8"},
        **({"bf16": {"dtype": "bfloat16"}} if args.bf16 else {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reranker", default=None, help="hub id or folder (default: the random 0.6B-geometry one)")
    parser.add_argument("--embedder", default=None, help="hub id or folder (default: the random 0.6B-geometry one)")
    parser.add_argument("--layers", type=int, default=28, help="layers of the random checkpoints")
    parser.add_argument("--passages", type=int, default=100, help="workload R passages to rerank")
    parser.add_argument("--texts", type=int, default=150, help="workload R passages to embed")
    parser.add_argument(
        "--workload-file", default=None, help='JSON lines, first line {"query": ..., "documents": [...]}'
    )
    parser.add_argument("--bf16", action="store_true", help="also compare bf16 with fp32, for scale")
    parser.add_argument("--skip", choices=["rerank", "embed"], default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {cpu_name()} (flags: {cpu_flags()}); torch {torch.__version__}; threads {args.threads}")
    report: dict[str, Any] = {"cpu_flags": cpu_flags(), "rerank": {}, "embed": {}}
    query, documents = load_workload(args)

    if args.skip != "rerank":
        model = args.reranker or str(random_checkpoint("reranker", args.layers))
        reference = Qwen3RerankEngine.from_pretrained(model, device="cpu", dtype="float32").score(query, documents)
        print(f"\nreranker {model}: 1 query + {len(documents)} passages, against fp32")
        for name, load in variants(args).items():
            scores = Qwen3RerankEngine.from_pretrained(model, device="cpu", **load).score(query, documents)
            numbers = report["rerank"][name] = rerank_fidelity(reference, scores)
            verdict = numbers["spearman"] >= BARS["spearman"] and numbers["top10"] >= BARS["top10"]
            print(
                f"  {name}: max |Δ| {numbers['max_abs_delta']:.2e}, mean |Δ| {numbers['mean_abs_delta']:.2e}, "
                f"Spearman {numbers['spearman']:.4f} (bar {BARS['spearman']}), top-10 overlap "
                f"{numbers['top10']}/10 (bar {BARS['top10']}/10): {'meets' if verdict else 'MISSES'} the bars"
            )
    if args.skip != "embed":
        model = args.embedder or str(random_checkpoint("embedder", args.layers))
        spec = dataclasses.replace(WORKLOADS["R"], documents=args.texts)  # R's length distribution, more of them
        texts = make_workload(spec).documents if args.workload_file is None else documents
        reference_vectors = Qwen3EmbedEngine.from_pretrained(model, device="cpu", dtype="float32").embed_documents(
            texts
        )
        print(f"\nembedder {model}: {len(texts)} passages, against fp32")
        for name, load in variants(args).items():
            vectors = Qwen3EmbedEngine.from_pretrained(model, device="cpu", **load).embed_documents(texts)
            numbers = report["embed"][name] = embed_fidelity(reference_vectors, vectors)
            verdict = numbers["mean_cosine"] >= BARS["mean_cosine"]
            print(
                f"  {name}: cosine to fp32 mean {numbers['mean_cosine']:.5f} (bar {BARS['mean_cosine']}), min "
                f"{numbers['min_cosine']:.5f}: {'meets' if verdict else 'MISSES'} the bar"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
