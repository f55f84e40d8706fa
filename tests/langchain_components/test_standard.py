"""LangChain's standard embeddings tests, on a tiny random Qwen3-Embedding checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from qwen3_rag_components.langchain import Qwen3Embeddings


class TinyCheckpoint:
    """Points ``embedding_model_params`` at the session's tiny checkpoint (the standard tests read a property)."""

    checkpoint: Path

    @pytest.fixture(autouse=True)
    def _use_tiny_checkpoint(self, embedder_paths: dict[str, Path]) -> None:
        self.checkpoint = embedder_paths["base"]

    @property
    def embeddings_class(self) -> type[Qwen3Embeddings]:
        return Qwen3Embeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": str(self.checkpoint), "device": "cpu", "local_files_only": True}


class TestQwen3EmbeddingsUnit(TinyCheckpoint, EmbeddingsUnitTests):
    pass


class TestQwen3EmbeddingsIntegration(TinyCheckpoint, EmbeddingsIntegrationTests):
    pass
