"""Fixtures for the Haystack components: tiny checkpoints as model paths, reference engines, a small corpus."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")  # read when haystack is first imported
pytest.importorskip("haystack", reason="the Haystack components need the 'haystack' extra")

from haystack import Document
from haystack.utils import ComponentDevice

CPU = ComponentDevice.from_str("cpu")


@pytest.fixture
def documents() -> list[Document]:
    return [
        Document(content="Beijing is the capital of China.", meta={"title": "China", "year": 2024}),
        Document(content="Berlin is the capital of Germany.", meta={"title": "Germany"}),
        Document(content="Gravity pulls objects toward each other.", meta={"title": None}),
        Document(content="The Great Wall runs across northern China."),
        Document(content="Paris is known for the Eiffel tower.", meta={"title": "France", "year": 0}),
        Document(content="dense retrieval maps queries and passages to vectors " * 6),
    ]
