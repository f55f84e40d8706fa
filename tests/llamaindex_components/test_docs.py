"""Every field has a docstring, and docs/llamaindex.md lists every field the two classes add, with its default."""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

import pytest

from qwen3_rag_components.adapter_fields import EmbedFields, RerankFields
from qwen3_rag_components.llamaindex import Qwen3Embedding, Qwen3Rerank

DOCS = Path(__file__).parents[2] / "docs" / "llamaindex.md"


def documented_fields(heading: str) -> dict[str, str]:
    """``{field: default}`` from the table under ``heading``."""
    section = DOCS.read_text(encoding="utf-8").split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| [^|]+(?:\\\|[^|]+)* \| `([^`]+)` \|", section, flags=re.MULTILINE)
    return dict(rows)


def own_fields(cls: type) -> list[str]:
    """The fields ``cls`` adds to LlamaIndex's base class, or redefines (``embed_batch_size``)."""
    ours = set(RerankFields.model_fields) | set(EmbedFields.model_fields) | set(vars(cls).get("__annotations__", {}))
    return [name for name in cls.model_fields if name in ours]


def shown(default: object) -> str:
    if isinstance(default, Enum):
        return f"{type(default).__name__}.{default.name}"
    return f'"{default}"' if isinstance(default, str) else repr(default)


@pytest.mark.parametrize("cls", [Qwen3Rerank, Qwen3Embedding])
def test_fields_are_documented(cls):
    documented = documented_fields(f"`{cls.__name__}` fields")
    ours = own_fields(cls)
    assert sorted(documented) == sorted(ours)
    for name in ours:
        field = cls.model_fields[name]
        assert field.description, f"{cls.__name__}.{name} has no docstring"
        assert documented[name] == shown(field.default), name
