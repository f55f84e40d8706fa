"""``qwen3-rag serve``: its options, and loading the models before the server listens."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from ..engine import EmbedOptions, LoadSpec, RerankOptions
from ..engine.options import DEFAULT_EMBEDDER, DEFAULT_MAX_TOKENS_PER_PACK, DEFAULT_RERANKER
from ..engine.placement import DTYPES
from ..engine.quantize import QUANTIZATIONS
from .texts import PROG, CliError

API_KEY_VARIABLE = "QWEN3_RAG_API_KEY"


def add_serve_command(commands: Any, positive_int: Any) -> None:
    summary = "Serve the reranker and/or embedder over HTTP (Cohere/Jina, OpenAI and TEI routes)."
    parser = commands.add_parser(
        "serve",
        help=summary,
        description=f"{summary}\n\nexample:\n  {PROG} serve --reranker Qwen/Qwen3-Reranker-0.6B --port 8000",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    models = parser.add_argument_group("models (at least one)")
    models.add_argument("--reranker", default=None, metavar="MODEL", help="hub id or local folder of a reranker")
    models.add_argument("--embedder", default=None, metavar="MODEL", help="hub id or local folder of an embedder")
    models.add_argument(
        "--demo",
        action="store_true",
        help="serve the demo's models: the official 0.6B ones when they load without a network wait, else random "
        "checkpoints (their scores mean nothing)",
    )
    models.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA if available, else CPU)")
    models.add_argument(
        "--dtype",
        choices=list(DTYPES),
        default=None,
        help="default: bfloat16 on CUDA and on CPUs where it measures faster, else float32; $QWEN3_RAG_DTYPE sets it",
    )
    models.add_argument(
        "--quantization",
        choices=list(QUANTIZATIONS),
        default=None,
        help="int8: int8 weights and activations in every layer's projections but the first layer's, quantized at load "
        "(CPU only)",
    )
    models.add_argument("--local-files-only", action="store_true", help="never touch the network; use the local cache")
    models.add_argument(
        "--max-tokens-per-pack",
        type=positive_int,
        default=DEFAULT_MAX_TOKENS_PER_PACK,
        metavar="N",
        help=f"token budget of one forward pass, shared by requests (default: {DEFAULT_MAX_TOKENS_PER_PACK})",
    )
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, loopback only)")
    server.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    server.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_VARIABLE),
        help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_VARIABLE}; unset: no key)",
    )
    limits = parser.add_argument_group("limits (larger requests get a 413 naming the limit)")
    limits.add_argument("--max-documents", type=positive_int, default=1000, metavar="N", help="texts per request")
    limits.add_argument("--max-chars", type=positive_int, default=100_000, metavar="N", help="characters per text")
    limits.add_argument(
        "--max-body-bytes", type=positive_int, default=16 * 2**20, metavar="N", help="request body size"
    )
    load = parser.add_argument_group("load (past these: 429 with Retry-After)")
    load.add_argument(
        "--max-concurrent-requests",
        type=positive_int,
        default=None,
        metavar="N",
        help="requests in flight at once (default: 4 per CPU core, at least 16)",
    )
    load.add_argument(
        "--max-queued-tokens",
        type=positive_int,
        default=None,
        metavar="N",
        help="tokens of admitted requests not yet computed (default: 262144, 32 packs of the default size)",
    )
    load.add_argument(
        "--graceful-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="on SIGTERM or SIGINT: stop accepting, let requests in flight finish for up to S s, exit 0 (default 30)",
    )
    parser.set_defaults(run=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    try:
        from ..serve import ServeLimits, load_models, run_server
    except ImportError as error:
        raise CliError(str(error)) from error
    reranker, embedder, local_files_only = args.reranker, args.embedder, args.local_files_only
    if args.demo:
        from ..demo.models import DEFAULT_RANDOM_GEOMETRY, models_or_random

        models = models_or_random(
            embedder or DEFAULT_EMBEDDER,
            reranker or DEFAULT_RERANKER,
            local_files_only,
            cache_dir=None,
            geometry=DEFAULT_RANDOM_GEOMETRY,
            notice=sys.stderr,
        )
        reranker, embedder, local_files_only = models.reranker, models.embedder, models.local_files_only
    if reranker is None and embedder is None:
        raise CliError("give --reranker, --embedder (or both), or --demo", code=2)
    logging.basicConfig(level=logging.INFO, format=f"{PROG}: %(message)s")  # "loaded MODEL on cpu (float32) in 2.1 s"

    def spec(model: str | None) -> LoadSpec | None:
        return (
            None
            if model is None
            else LoadSpec(model, args.device, args.dtype, local_files_only, quantization=args.quantization)
        )

    served_reranker, served_embedder = load_models(
        spec(reranker),
        spec(embedder),
        rerank_options=RerankOptions(max_tokens_per_pack=args.max_tokens_per_pack),
        embed_options=EmbedOptions(max_tokens_per_pack=args.max_tokens_per_pack),
    )
    load = {"max_concurrent_requests": args.max_concurrent_requests, "max_queued_tokens": args.max_queued_tokens}
    given = {name: value for name, value in load.items() if value is not None}  # else ServeLimits' defaults
    limits = ServeLimits(args.max_documents, args.max_chars, args.max_body_bytes, **given)
    stopped_by = run_server(
        served_reranker,
        served_embedder,
        host=args.host,
        port=args.port,
        limits=limits,
        api_key=args.api_key,
        graceful_timeout=args.graceful_timeout,
    )
    return 130 if stopped_by == signal.SIGINT else 0  # drained: SIGTERM is a normal stop, Ctrl-C an interrupt
