"""Skip without the 'llamaindex' extra (checkpoints and reference engines come from tests/conftest.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core", reason="the LlamaIndex adapters need the 'llamaindex' extra")
