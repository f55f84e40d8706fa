"""A RAG run over Python's own help topics: embed, index, retrieve, rerank, and print what the engines did.

``python -m qwen3_rag_components.demo`` (or ``make demo``) indexes the passages of ``pydoc_data.topics`` (the text
behind ``help("with")``) with the Qwen3 embedder, retrieves 20 passages per question from an in-memory store and
reranks them with the Qwen3 reranker to keep 3. ``--framework haystack`` (default) runs the Haystack components,
``--framework langchain`` the LangChain classes. See ``docs/demo.md``.

When the models cannot be loaded (offline with nothing cached), the demo says so in one line and runs on random
Qwen3 checkpoints written locally: the rankings then mean nothing, but the pipeline, the speed and the meta are real.
"""

from __future__ import annotations

from .corpus import MAX_WORDS, MIN_WORDS, Passage, load_passages
from .main import main
from .models import Models, choose_models, random_models
from .pipelines import RERANK_K, RETRIEVE_K

__all__ = [
    "MAX_WORDS",
    "MIN_WORDS",
    "RERANK_K",
    "RETRIEVE_K",
    "Models",
    "Passage",
    "choose_models",
    "load_passages",
    "main",
    "random_models",
]
