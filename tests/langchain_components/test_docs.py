"""Every field has a docstring, and docs/langchain.md lists every field of both classes with its default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qwen3_rag_components.langchain import Qwen3Embeddings, Qwen3Reranker

DOCS = Path(__file__).parents[2] / "docs" / "langchain.md"


def documented_fields(heading: str) -> dict[str, str]:
    """``{field: default}`` from the table under ``heading``."""
    section = DOCS.read_text(encoding="utf-8").split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| [^|]+(?:\\\|[^|]+)* \| `([^`]+)` \|", section, flags=re.MULTILINE)
    return dict(rows)


@pytest.mark.parametrize("cls", [Qwen3Reranker, Qwen3Embeddings])
def test_fields_are_documented(cls):
    documented = documented_fields(f"`{cls.__name__}` fields")
    assert list(documented) == list(cls.model_fields)
    for name, field in cls.model_fields.items():
        assert field.description, f"{cls.__name__}.{name} has no docstring"
        default = f'"{field.default}"' if isinstance(field.default, str) else repr(field.default)
        assert documented[name] == default, name
