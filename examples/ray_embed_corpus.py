"""Embed the demo corpus (Python's help topics) with Ray Data and write it to Parquet: id, topic, text, embedding.

    python examples/ray_embed_corpus.py OUTPUT_DIR [--model EMBEDDER] [--limit N] [--concurrency N] [--num-gpus G]

Model: --model, else $QWEN3_EMBEDDER, else Qwen/Qwen3-Embedding-0.6B (hub id or local folder). When it is not at hand
(offline with nothing cached), or with --random, a random tiny Qwen3 checkpoint is written and used instead: the
vectors then mean nothing, but the run is real. Ray joins the cluster in $RAY_ADDRESS, else starts a local one; on a
cluster, OUTPUT_DIR must be storage every node can write (a shared folder, s3://..., gs://...).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import ray.data

from qwen3_rag_components import demo
from qwen3_rag_components.ray import embed_dataset


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Embed Python's help topics with Ray Data and write Parquet.")
    parser.add_argument("output", help="folder (or s3://, gs:// URI) for the Parquet files")
    parser.add_argument("--model", default=os.environ.get("QWEN3_EMBEDDER", "Qwen/Qwen3-Embedding-0.6B"))
    parser.add_argument("--limit", type=int, default=None, help="embed an even spread of N passages only")
    parser.add_argument("--dimensions", type=int, default=None, help="keep the first N values of each vector (MRL)")
    parser.add_argument("--batch-size", type=int, default=256, help="rows per engine call (default: %(default)s)")
    parser.add_argument("--concurrency", type=int, default=1, help="actors; on GPUs, the number of GPUs")
    parser.add_argument("--num-gpus", type=float, default=None, help="GPUs per actor (1 on a GPU cluster)")
    parser.add_argument("--local-files-only", action="store_true", help="never download; use folders or the cache")
    parser.add_argument("--random", action="store_true", help="use a random tiny checkpoint (no download)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="where the random checkpoint is written")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    return args


def pick_model(args: argparse.Namespace) -> demo.Models:
    """The model to load (``.embedder``); a random tiny checkpoint when it is not at hand, or with --random."""
    if not args.random:
        models, reason = demo.choose_models(args.model, args.model, args.local_files_only)
        if reason is None:
            return models
        reason = "; ".join(dict.fromkeys(reason.split("; ")))  # asked for as embedder and as reranker: said twice
        print(f"Official model unavailable ({reason}): running on a RANDOM tiny Qwen3 checkpoint.")
    return demo.random_models(args.cache_dir, "tiny")


def main(argv: list[str]) -> None:
    args = parse_args(argv[1:])
    models = pick_model(args)
    passages = demo.load_passages(args.limit)

    ray.init()  # joins $RAY_ADDRESS, else starts Ray on this machine
    start = time.perf_counter()
    rows = [{"id": i, "topic": p.topic, "text": p.text} for i, p in enumerate(passages)]
    ds = ray.data.from_items(rows)  # for a large corpus: ray.data.read_parquet / read_json / read_text
    ds = embed_dataset(
        ds,
        column="text",
        model=models.embedder,
        local_files_only=models.local_files_only,
        dimensions=args.dimensions,
        batch_size=args.batch_size,
        concurrency=args.concurrency,
        num_gpus=args.num_gpus,
    )
    ds.write_parquet(args.output)  # runs the pipeline: one or more files per write task
    seconds = time.perf_counter() - start

    written = ray.data.read_parquet(args.output)  # reads the files' footers only
    dims = written.schema().types[written.schema().names.index("embedding")].shape[0]
    print(f"Embedded {written.count()} passages with {models.embedder} in {seconds:.1f} s: {dims} floats each")
    print(f"Wrote {args.output} (columns {written.schema().names})")
    if models.random:
        print("(Random weights: the vectors mean nothing; the pipeline and the timings are real.)")


if __name__ == "__main__":
    main(sys.argv)
