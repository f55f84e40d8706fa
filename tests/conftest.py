"""Session-scoped tiny random Qwen3 checkpoints (written once per test session) and their engines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

from qwen3_rag_components import Qwen3EmbedEngine, Qwen3RerankEngine
from qwen3_rag_components.engine.placement import DTYPE_VARIABLE
from qwen3_rag_components.engine.scheduler import Job
from qwen3_rag_components.testing import write_embedding_checkpoint, write_reranker_checkpoint

# Wherever a test leaves dtype=None it checks the exact path (fp32, within 1e-5 of the official code), which on a CPU
# with AMX is not the hardware default (bf16). Subprocesses (the CLI, the HTTP service, Ray workers) inherit this.
os.environ[DTYPE_VARIABLE] = "float32"


def capture_jobs(monkeypatch: pytest.MonkeyPatch, engine: Qwen3RerankEngine | Qwen3EmbedEngine) -> list[Job]:
    """Record every job ``engine`` hands to its scheduler (the tokenized prefixes and items)."""
    seen: list[Job] = []
    real = engine.scheduler.run

    def spy(job: Job, progress=None):
        seen.append(job)
        return real(job, progress)

    monkeypatch.setattr(engine.scheduler, "run", spy)
    return seen


@pytest.fixture(scope="session")
def reranker_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rerankers")
    return {
        "tied": write_reranker_checkpoint(root / "tied", tied=True, seed=0),
        "untied": write_reranker_checkpoint(root / "untied", tied=False, seed=1),
    }


@pytest.fixture(scope="session", params=["tied", "untied"])
def reranker_path(request: pytest.FixtureRequest, reranker_paths: dict[str, Path]) -> Path:
    return reranker_paths[request.param]


@pytest.fixture(scope="session")
def official_reranker(reranker_path: Path):
    """The full transformers model and tokenizer, as the model card loads them (fp32, CPU)."""
    model = AutoModelForCausalLM.from_pretrained(reranker_path, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(reranker_path, padding_side="left")
    return model, tokenizer


@pytest.fixture(scope="session")
def rerank_engine(reranker_path: Path) -> Qwen3RerankEngine:
    return Qwen3RerankEngine.from_pretrained(str(reranker_path), device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def embedder_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same random weights saved as a base Qwen3Model and as a Qwen3ForCausalLM."""
    root = tmp_path_factory.mktemp("embedders")
    return {
        "base": write_embedding_checkpoint(root / "base", as_causal_lm=False, seed=0),
        "causal_lm": write_embedding_checkpoint(root / "causal_lm", as_causal_lm=True, seed=0),
    }


@pytest.fixture(scope="session", params=["base", "causal_lm"])
def embedder_path(request: pytest.FixtureRequest, embedder_paths: dict[str, Path]) -> Path:
    return embedder_paths[request.param]


@pytest.fixture(scope="session")
def official_embedder(embedder_paths: dict[str, Path]):
    """The official path: the base Qwen3Model with the tokenizer that appends <|endoftext|>, left padding."""
    model = AutoModel.from_pretrained(embedder_paths["base"], dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(embedder_paths["base"], padding_side="left")
    return model, tokenizer


@pytest.fixture(scope="session")
def embed_engine(embedder_path: Path) -> Qwen3EmbedEngine:
    return Qwen3EmbedEngine.from_pretrained(str(embedder_path), device="cpu", local_files_only=True)


@pytest.fixture(scope="session")
def reranker_model(reranker_paths: dict[str, Path]) -> str:
    return str(reranker_paths["tied"])


@pytest.fixture(scope="session")
def embedder_model(embedder_paths: dict[str, Path]) -> str:
    return str(embedder_paths["base"])


@pytest.fixture(scope="session")
def reference_reranker(reranker_model: str) -> Qwen3RerankEngine:
    """Loaded apart from the shared engine cache: what the framework adapters must reproduce."""
    return Qwen3RerankEngine.from_pretrained(reranker_model, device="cpu")


@pytest.fixture(scope="session")
def reference_embedder(embedder_model: str) -> Qwen3EmbedEngine:
    return Qwen3EmbedEngine.from_pretrained(embedder_model, device="cpu")
