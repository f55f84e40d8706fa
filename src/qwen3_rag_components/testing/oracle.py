"""The official Qwen3-Reranker / Qwen3-Embedding computations, written from the model cards (the reference).

Per-pair, left-padded batches through the full transformers model: vocabulary-wide logits at the last position for
the reranker, last-token pooling of the last hidden state for the embedder.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct "
    'provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
TASK = "Given a web search query, retrieve relevant passages that answer the query"


def format_instruction(instruction: str | None, query: str, doc: str) -> str:
    if instruction is None:
        instruction = TASK
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"


@torch.no_grad()
def official_rerank_scores(
    model,
    tokenizer,
    query: str,
    documents: Sequence[str],
    *,
    instruction: str | None = None,
    max_length: int = 8192,
    batch_size: int = 8,
) -> list[float]:
    tokenizer.padding_side = "left"
    prefix_tokens = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(SUFFIX, add_special_tokens=False)
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    scores: list[float] = []
    for start in range(0, len(documents), batch_size):
        pairs = [format_instruction(instruction, query, doc) for doc in documents[start : start + batch_size]]
        inputs = tokenizer(
            pairs,
            padding=False,
            truncation="longest_first",
            return_attention_mask=False,
            max_length=max_length - len(prefix_tokens) - len(suffix_tokens),
        )
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = prefix_tokens + ele + suffix_tokens
        inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
        inputs = {key: value.to(model.device) for key, value in inputs.items()}
        batch_scores = model(**inputs).logits[:, -1, :]
        true_vector = batch_scores[:, token_true_id]
        false_vector = batch_scores[:, token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        scores.extend(batch_scores[:, 1].exp().tolist())
    return scores


def last_token_pool(last_hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
    if left_padding:
        return last_hidden_states[:, -1]
    sequence_lengths = attention_mask.sum(dim=1) - 1
    batch_size = last_hidden_states.shape[0]
    return last_hidden_states[torch.arange(batch_size, device=last_hidden_states.device), sequence_lengths]


def get_detailed_instruct(task_description: str, query: str) -> str:
    return f"Instruct: {task_description}\nQuery:{query}"


@torch.no_grad()
def official_embeddings(
    model, tokenizer, texts: Sequence[str], *, max_length: int = 8192, batch_size: int = 8, normalize: bool = True
) -> torch.Tensor:
    """``model`` is the base ``Qwen3Model``; the tokenizer appends <|endoftext|> itself."""
    tokenizer.padding_side = "left"
    out = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        batch = {key: value.to(model.device) for key, value in batch.items()}
        outputs = model(**batch)
        embeddings = last_token_pool(outputs.last_hidden_state, batch["attention_mask"])
        out.append(F.normalize(embeddings, p=2, dim=1) if normalize else embeddings)
    return torch.cat(out)
