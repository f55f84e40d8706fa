"""A RAG run over Python's own help topics: embed, index, retrieve, rerank, and print what the engines did.

``python -m qwen3_rag_components.demo`` (or ``make demo``) indexes the passages of ``pydoc_data.topics`` (the text
behind ``help("with")``) with the Qwen3 embedder, retrieves 20 passages per question from an in-memory store and
reranks them with the Qwen3 reranker to keep 3. ``--framework haystack`` (default) runs the Haystack components,
``--framework langchain`` the LangChain classes. See ``docs/demo.md``.

When the models cannot be loaded (offline with nothing cached), the demo says so in one line and runs on random
Qwen3 checkpoints written locally: the rankings then mean nothing, but the pipeline, the speed and the meta are real.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .engine import RunMeta

DEFAULT_EMBEDDER = "Qwen/Qwen3-Embedding-0.6B"
DEFAULT_RERANKER = "Qwen/Qwen3-Reranker-0.6B"
DEFAULT_QUESTIONS = (
    "How do I add an item to the end of a list?",
    "What does the with statement do?",
    "How are default argument values evaluated?",
    "What is the difference between is and ==?",
    "How do I make sure cleanup code runs even if an exception is raised?",
    "How do I format a number with two decimal places?",
)
RETRIEVE_K = 20
RERANK_K = 3
MIN_WORDS, MAX_WORDS = 60, 200
# Random fallback: layer geometry name -> Qwen3Geometry fields (hidden, mlp, layers, heads, kv heads, head_dim).
RANDOM_GEOMETRIES = {
    "0.6b-2layers": (1024, 3072, 2, 16, 8, 128),  # the real 0.6B width, 2 of its 28 layers
    "tiny": (64, 128, 2, 4, 2, 16),  # for tests: seconds, not minutes
}


# --------------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Passage:
    topic: str
    text: str


def _pieces(paragraph: str) -> list[str]:
    """The paragraph itself, or word windows of MAX_WORDS when it is longer."""
    words = paragraph.split()
    if len(words) <= MAX_WORDS:
        return [paragraph]
    return [" ".join(words[i : i + MAX_WORDS]) for i in range(0, len(words), MAX_WORDS)]


def _chunks(paragraphs: list[str]) -> list[str]:
    """Merge consecutive paragraphs until a chunk has MIN_WORDS words, never going over MAX_WORDS."""
    chunks: list[list[str]] = []
    current: list[str] = []
    count = 0
    for piece in (piece for paragraph in paragraphs for piece in _pieces(paragraph)):
        words = len(piece.split())
        if current and (count >= MIN_WORDS or count + words > MAX_WORDS):
            chunks.append(current)
            current, count = [], 0
        current.append(piece)
        count += words
    if current and chunks and count < MIN_WORDS and count + sum(len(p.split()) for p in chunks[-1]) <= MAX_WORDS:
        chunks[-1].extend(current)  # a short tail joins the previous chunk when it fits
    elif current:
        chunks.append(current)
    return ["\n\n".join(chunk) for chunk in chunks]


def load_passages(max_passages: int | None = None) -> list[Passage]:
    """Python's help topics split into passages of ~60-200 words; ``max_passages`` keeps an even spread of them."""
    from pydoc_data.topics import topics

    unique: dict[str, Passage] = {}
    # Some topics repeat others ("compound" holds "function", "try", ...): a passage found in several goes to the
    # most specific (shortest) topic, and is indexed once.
    for topic in sorted(topics, key=lambda name: (len(topics[name]), name)):
        paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", topics[topic]) if p.strip()]
        for chunk in _chunks(paragraphs):
            unique.setdefault(chunk, Passage(topic, chunk))
    passages = sorted(unique.values(), key=lambda passage: passage.topic)  # stable: keeps the order within a topic
    if max_passages is None or max_passages >= len(passages):
        return passages
    return [passages[i * len(passages) // max_passages] for i in range(max_passages)]


# --------------------------------------------------------------------------------------------- models


class DemoError(Exception):
    """A missing optional dependency: the message says what to install."""


@dataclass(frozen=True)
class Models:
    embedder: str
    reranker: str
    local_files_only: bool
    random: bool = False


def _is_repo_id(name: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", name) is not None and not name.startswith((".", "/", "~"))


def _hub_reachable(timeout: float = 3.0) -> bool:
    """A plain TCP connect to the Hub endpoint: fails in milliseconds on a machine without network."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy, let the loader try
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo_id, local_files_only=True))
    except (OSError, ValueError):
        return False
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


def _unavailable(name: str, offline: bool) -> str | None:
    """Why ``name`` cannot be loaded without a network wait, or None when it can (or may) be loaded."""
    if Path(name).is_dir():
        return None
    if not _is_repo_id(name):
        return f"{name} is not a local folder"
    if _in_hub_cache(name):
        return None
    return f"{name} is not in the Hugging Face cache" if offline else None


def choose_models(embedder: str, reranker: str, local_files_only: bool) -> tuple[Models, str | None]:
    """The models to load, and the reason to fall back to random checkpoints (None: no need)."""
    embedder, reranker = (os.path.expanduser(name) if name.startswith("~") else name for name in (embedder, reranker))
    needs_hub = any(not Path(name).is_dir() and _is_repo_id(name) for name in (embedder, reranker))
    offline = local_files_only or (needs_hub and not _hub_reachable())
    reasons = [reason for name in (embedder, reranker) if (reason := _unavailable(name, offline))]
    if reasons and offline and not local_files_only:
        reasons.append("no network access to the Hub")
    return Models(embedder, reranker, offline), "; ".join(reasons) or None


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qwen3_rag_components" / "demo"


def random_models(cache_dir: Path | None, geometry_name: str) -> Models:
    """Random Qwen3 checkpoints of the chosen geometry, written once under ``cache_dir`` and reused afterwards."""
    try:
        from .testing import Qwen3Geometry, write_embedding_checkpoint, write_reranker_checkpoint
    except ImportError as error:
        raise DemoError(
            f"The random fallback needs the test extra ({error}); install it with "
            "pip install 'qwen3-rag-components[test]', or pass --embedder/--reranker folders."
        ) from error
    geometry = Qwen3Geometry(*RANDOM_GEOMETRIES[geometry_name])
    root = (cache_dir or _cache_root()) / geometry_name
    writers: dict[str, Callable[[Path], Path]] = {
        "embedder": lambda path: write_embedding_checkpoint(path, geometry=geometry, seed=0),
        "reranker": lambda path: write_reranker_checkpoint(path, geometry=geometry, tied=True, seed=0),
    }
    for kind, write in writers.items():
        target = root / kind
        if not (target / "config.json").is_file():
            print(f"Writing a random {geometry_name} {kind} checkpoint to {target} (once)", file=sys.stderr)
            partial = root / f"{kind}.partial-{os.getpid()}"
            write(partial)  # written aside, then renamed: an interrupted run never leaves a half checkpoint
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
    return Models(str(root / "embedder"), str(root / "reranker"), local_files_only=True, random=True)


# --------------------------------------------------------------------------------------------- meta


class MetaTap:
    """Wraps a component's engine and keeps the ``RunMeta`` of each call it makes; results pass through unchanged."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.metas: list[RunMeta] = []

    def encode(self, *args: Any, **kwargs: Any) -> Any:
        result = self.engine.encode(*args, **kwargs)
        self.metas.append(result.meta)
        return result

    def score(self, query: str, documents: Sequence[str], **kwargs: Any) -> list[float]:
        result = self.engine.score_with_meta(query, documents, **kwargs)
        self.metas.append(result.meta)
        return result.scores

    def take(self) -> RunMeta:
        """The meta of the last call, forgetting it."""
        return self.metas.pop()

    def __getattr__(self, name: str) -> Any:
        if name == "engine":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        return getattr(self.engine, name)


def tap(component: Any) -> MetaTap:
    """Put a :class:`MetaTap` on a loaded component (Haystack component or LangChain object)."""
    wrapped = MetaTap(component._engine)
    component._engine = wrapped
    return wrapped


def describe(meta: RunMeta) -> str:
    seconds = meta.elapsed_ms / 1000
    rate = f"{meta.documents / seconds:,.1f} docs/s, {meta.tokens_computed / seconds:,.0f} tokens/s" if seconds else ""
    return (
        f"{meta.elapsed_ms:,.0f} ms, {meta.packs} pack{'s' * (meta.packs != 1)}, "
        f"{meta.documents} text{'s' * (meta.documents != 1)}, "
        f"{meta.tokens_computed:,} tokens computed (per-pair: {meta.padding_free_tokens:,}), "
        f"{meta.truncated_documents} truncated, {rate}"
    )


# --------------------------------------------------------------------------------------------- pipelines


@dataclass(frozen=True)
class Hit:
    topic: str
    score: float
    text: str


@dataclass(frozen=True)
class Answer:
    question: str
    seconds: float  # wall time of the whole query (embed, retrieve, rerank)
    hits: list[Hit]
    query_meta: RunMeta
    rerank_meta: RunMeta


@dataclass
class Report:
    load_s: float = 0.0
    index_s: float = 0.0
    index_meta: RunMeta | None = None
    answers: list[Answer] = field(default_factory=list)


class ModelLoadError(Exception):
    """Loading a model failed (missing files, no network, not a Qwen3 checkpoint)."""


def _load(loaders: Sequence[Callable[[], object]]) -> float:
    """Run the loaders (``warm_up`` and the like); seconds taken. Loading errors become :class:`ModelLoadError`."""
    start = time.perf_counter()
    try:
        for load in loaders:
            load()
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{type(error).__name__}: {error}") from error
    return time.perf_counter() - start


def run_haystack(passages: list[Passage], questions: Sequence[str], models: Models, device: str | None) -> Report:
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryEmbeddingRetriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore
    from haystack.utils import ComponentDevice

    from .haystack import Qwen3DocumentEmbedder, Qwen3Ranker, Qwen3TextEmbedder

    placement: dict[str, Any] = {
        "device": ComponentDevice.from_str(device) if device else None,
        "local_files_only": models.local_files_only,
    }
    doc_embedder = Qwen3DocumentEmbedder(models.embedder, progress_bar=True, **placement)
    text_embedder = Qwen3TextEmbedder(models.embedder, **placement)
    ranker = Qwen3Ranker(models.reranker, top_k=RERANK_K, **placement)
    report = Report(load_s=_load([doc_embedder.warm_up, text_embedder.warm_up, ranker.warm_up]))
    index_tap, query_tap, rerank_tap = tap(doc_embedder), tap(text_embedder), tap(ranker)

    store = InMemoryDocumentStore()
    start = time.perf_counter()
    documents = [Document(content=p.text, meta={"topic": p.topic}) for p in passages]
    store.write_documents(doc_embedder.run(documents=documents)["documents"])
    report.index_s, report.index_meta = time.perf_counter() - start, index_tap.take()

    pipeline = Pipeline()
    pipeline.add_component("text_embedder", text_embedder)
    pipeline.add_component("retriever", InMemoryEmbeddingRetriever(store, top_k=RETRIEVE_K))
    pipeline.add_component("ranker", ranker)
    pipeline.connect("text_embedder.embedding", "retriever.query_embedding")
    pipeline.connect("retriever.documents", "ranker.documents")
    for question in questions:
        start = time.perf_counter()
        result = pipeline.run({"text_embedder": {"text": question}, "ranker": {"query": question}})
        elapsed = time.perf_counter() - start
        hits = [Hit(d.meta["topic"], float(d.score or 0.0), d.content or "") for d in result["ranker"]["documents"]]
        report.answers.append(Answer(question, elapsed, hits, query_tap.take(), rerank_tap.take()))
    return report


def run_langchain(passages: list[Passage], questions: Sequence[str], models: Models, device: str | None) -> Report:
    try:
        from langchain_classic.retrievers import ContextualCompressionRetriever
    except ImportError as error:
        raise DemoError(
            f"--framework langchain needs ContextualCompressionRetriever: pip install langchain-classic ({error})"
        ) from error
    from langchain_core.documents import Document
    from langchain_core.vectorstores import InMemoryVectorStore

    from .langchain import Qwen3Embeddings, Qwen3Reranker

    placement: dict[str, Any] = {"device": device, "local_files_only": models.local_files_only}
    embeddings = Qwen3Embeddings(model=models.embedder, show_progress=True, **placement)
    reranker = Qwen3Reranker(model=models.reranker, top_n=RERANK_K, **placement)
    report = Report(load_s=_load([embeddings._get_engine, reranker._get_engine]))
    embed_tap, rerank_tap = tap(embeddings), tap(reranker)

    store = InMemoryVectorStore(embedding=embeddings)
    start = time.perf_counter()
    store.add_documents([Document(p.text, metadata={"topic": p.topic}) for p in passages])
    report.index_s, report.index_meta = time.perf_counter() - start, embed_tap.take()

    retriever = ContextualCompressionRetriever(
        base_compressor=reranker, base_retriever=store.as_retriever(search_kwargs={"k": RETRIEVE_K})
    )
    for question in questions:
        start = time.perf_counter()
        docs = retriever.invoke(question)
        elapsed = time.perf_counter() - start
        hits = [Hit(d.metadata["topic"], float(d.metadata["relevance_score"]), d.page_content) for d in docs]
        report.answers.append(Answer(question, elapsed, hits, embed_tap.take(), rerank_tap.take()))
    return report


# --------------------------------------------------------------------------------------------- output


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def print_report(report: Report, framework: str, models: Models, passages: list[Passage]) -> None:
    meta = report.index_meta
    assert meta is not None
    print(f"Models loaded in {report.load_s:.1f} s ({meta.device}, {meta.dtype})")
    print(f"Indexed {len(passages)} passages in {report.index_s:.1f} s = {len(passages) / report.index_s:,.1f} docs/s")
    print(f"  embedder meta: {describe(meta)}")
    retrieval = "InMemoryEmbeddingRetriever" if framework == "haystack" else "InMemoryVectorStore retriever"
    print(f"\nQuestions: query embedding → {retrieval} (top {RETRIEVE_K}) → reranker (top {RERANK_K})")
    for answer in report.answers:
        print(f"\nQ: {answer.question}  [{answer.seconds * 1000:,.0f} ms]")
        for rank, hit in enumerate(answer.hits, 1):
            print(f"  {rank}. {hit.score:.3f}  [{hit.topic}] {_snippet(hit.text)}")
        print(f"  query embedding meta: {describe(answer.query_meta)}")
        print(f"  reranker meta: {describe(answer.rerank_meta)}")
    if models.random:
        print("\n(Random weights: the rankings above mean nothing; the pipeline, the timings and the meta are real.)")


# --------------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="qwen3_rag_components.demo",
        description="A RAG run over Python's help topics with the Qwen3 embedder and reranker.",
        epilog=textwrap.dedent(
            """\
            Without the models (offline, nothing cached) the demo runs on random Qwen3 checkpoints written under
            --cache-dir: rankings are then meaningless, pipeline, timings and meta are real."""
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--framework", choices=("haystack", "langchain"), default="haystack")
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="hub id or local folder (default: %(default)s)")
    parser.add_argument("--reranker", default=DEFAULT_RERANKER, help="hub id or local folder (default: %(default)s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: CUDA if available, else CPU)")
    parser.add_argument("--max-passages", type=int, default=None, help="index an even spread of N passages only")
    parser.add_argument("--questions", nargs="+", default=None, help="questions to ask instead of the built-in ones")
    parser.add_argument("--local-files-only", action="store_true", help="never download; use folders or the cache")
    parser.add_argument(
        "--random-geometry",
        choices=sorted(RANDOM_GEOMETRIES),
        default="0.6b-2layers",
        help="shape of the random fallback checkpoints (default: %(default)s)",
    )
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"random checkpoints go here ({_cache_root()})")
    args = parser.parse_args(argv)
    if args.max_passages is not None and args.max_passages < 1:
        parser.error("--max-passages must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 on success, 1 when a dependency is missing or no model loads, 2 on bad arguments."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_:  # --help, or an argparse error already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return _run(args)
    except (DemoError, ModelLoadError) as error:  # ModelLoadError here: even the random checkpoints failed to load
        print(f"error: {error}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    models, reason = choose_models(args.embedder, args.reranker, args.local_files_only)
    if reason:
        print(f"Official models unavailable ({reason}): running on RANDOM {args.random_geometry} Qwen3 checkpoints.")
        models = random_models(args.cache_dir, args.random_geometry)
    passages = load_passages(args.max_passages)
    questions = args.questions or list(DEFAULT_QUESTIONS)
    topics = len({p.topic for p in passages})
    print(f"Corpus: {len(passages)} passages from {topics} Python help topics (pydoc_data.topics)")
    label = " (RANDOM weights)" if models.random else ""
    print(f"Framework: {args.framework}; embedder: {models.embedder}; reranker: {models.reranker}{label}")
    run = run_haystack if args.framework == "haystack" else run_langchain
    try:
        report = run(passages, questions, models, args.device)
    except ModelLoadError as error:
        if models.random:
            raise
        print(f"Official models failed to load ({_snippet(str(error), 200)}): running on RANDOM checkpoints.")
        models = random_models(args.cache_dir, args.random_geometry)
        report = run(passages, questions, models, args.device)
    print_report(report, args.framework, models, passages)
    print(f"\nTotal {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
