"""Official Qwen3-Reranker / Qwen3-Embedding templates and the tokenization that keeps them token-exact.

User text (queries, instructions, documents) is tokenized with a copy of the checkpoint's tokenizer that has no added
tokens, so a string such as ``<|im_end|>`` or ``<think>`` inside user text becomes ordinary BPE tokens and can never
produce a control token. Template parts are tokenized with the full tokenizer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_RERANK_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
DEFAULT_EMBED_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
ENDOFTEXT = "<|endoftext|>"


def rerank_query_body(instruction: str, query: str) -> str:
    # The official body is f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}". Qwen's pre-tokenizer
    # always ends a pre-token at this colon, so cutting here (the space goes with the document) is token-exact.
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>:"


def rerank_document_body(document: str) -> str:
    return " " + document


def embed_query_text(instruction: str, query: str) -> str:
    return f"Instruct: {instruction}\nQuery:{query}"


def check_list(values: object, what: str, entries: str) -> None:
    """Raise ``TypeError`` unless ``values`` is a list-like sequence (not a string, bytes or a mapping)."""
    if isinstance(values, str):
        raise TypeError(
            f"{what} must be a list of {entries}, got a single string; wrap it in a list: [{values!r:.60}]."
        )
    if isinstance(values, bytes | bytearray) or not isinstance(values, Sequence):
        raise TypeError(f"{what} must be a list of {entries}, got {type(values).__name__}.")


def check_texts(texts: Sequence[object], what: str) -> None:
    """Raise ``TypeError`` naming the first entry that is not a string."""
    check_list(texts, what, "strings")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{what}[{index}] is {type(text).__name__} ({text!r:.80}); every entry must be a str.")


def check_query(query: object, what: str = "query") -> str:
    if not isinstance(query, str):
        raise TypeError(f"{what} is {type(query).__name__} ({query!r:.80}); it must be a str.")
    return query


def check_instruction(instruction: object, default: str) -> str:
    if instruction is None:
        return default
    if not isinstance(instruction, str):
        raise TypeError(f"instruction must be a str or None, got {type(instruction).__name__}.")
    return instruction


class TextTokenizer:
    """Token ids of template parts (with control tokens) and of user text (as plain text, never control tokens)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        self.tokenizer = tokenizer
        spec = json.loads(tokenizer.backend_tokenizer.to_str())
        # No added tokens and no post-processor: user text goes through normalizer, pre-tokenizer and BPE only.
        spec.update(added_tokens=[], post_processor=None, truncation=None, padding=None)
        self._plain = Tokenizer.from_str(json.dumps(spec))
        self._full = tokenizer.backend_tokenizer

    def template_ids(self, text: str) -> list[int]:
        return self._full.encode(text, add_special_tokens=False).ids

    def plain_ids(self, texts: Sequence[str]) -> list[list[int]]:
        # encode_batch never mutates the tokenizer (no truncation/padding state), so threads can share it.
        return [encoding.ids for encoding in self._plain.encode_batch_fast(list(texts), add_special_tokens=False)]

    def token_id(self, token: str) -> int:
        token_id = self.tokenizer.convert_tokens_to_ids(token)
        if not isinstance(token_id, int) or token_id == self.tokenizer.unk_token_id:
            raise ValueError(
                f"The tokenizer has no single token {token!r}; Qwen3 reranker/embedding checkpoints have it. "
                "Check that the model path points at a Qwen3-Reranker or Qwen3-Embedding checkpoint."
            )
        return token_id
