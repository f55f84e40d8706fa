"""The demo's corpus: Python's own help topics (``pydoc_data.topics``) cut into passages of ~60-200 words."""

from __future__ import annotations

import re
from dataclasses import dataclass

MIN_WORDS, MAX_WORDS = 60, 200


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
