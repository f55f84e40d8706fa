"""Tiny random Qwen3 checkpoints with the real layout, written to a folder as ``from_pretrained`` expects them."""

from __future__ import annotations

import dataclasses
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers

from ..engine.prompts import DEFAULT_RERANK_INSTRUCTION, RERANK_PREFIX, RERANK_SUFFIX
from .tokenizer import (
    ENDOFTEXT_ID,
    IM_END_ID,
    NO_TOKEN_ID,
    VOCAB_SIZE,
    YES_TOKEN_ID,
    build_qwen3_tokenizer,
)

_ROPE_THETA = 1_000_000.0
# Std of the random weights. The default 0.02 makes a 2-layer model nearly constant across inputs; a larger
# init lets the final hidden states, and so the reranker scores, of different documents actually differ.
_INITIALIZER_RANGE = 0.1
# Target std of logit("yes") - logit("no") over the calibration prompts: scores then spread over ~0.2-0.8.
_YES_NO_LOGIT_STD = 1.0

_CALIBRATION_PAIRS = (
    ("What is the capital of France?", "Paris is the capital and largest city of France."),
    ("What is the capital of France?", "The mitochondria is the powerhouse of the cell."),
    ("how do vaccines work", "Vaccines train the immune system to recognise a pathogen."),
    ("how do vaccines work", "The recipe calls for two cups of flour and one egg."),
    ("rust borrow checker", "The borrow checker enforces ownership rules at compile time."),
    ("rust borrow checker", "Iron oxide forms when iron reacts with oxygen and water."),
    ("日本の首都", "東京は日本の首都です。"),
    ("weather tomorrow", "Expect light rain in the morning and sunshine after noon."),
)


@dataclass(frozen=True)
class Qwen3Geometry:
    """The shape parameters of a Qwen3 decoder."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int

    def with_layers(self, num_hidden_layers: int) -> Qwen3Geometry:
        return dataclasses.replace(self, num_hidden_layers=num_hidden_layers)


TINY = Qwen3Geometry(64, 128, 2, 4, 2, 16)
QWEN3_0_6B = Qwen3Geometry(1024, 3072, 28, 16, 8, 128)


def qwen3_config(
    geometry: Qwen3Geometry,
    *,
    tie_word_embeddings: bool,
    vocab_size: int = VOCAB_SIZE,
    eos_token_id: int = IM_END_ID,
) -> transformers.Qwen3Config:
    """A Qwen3 config with the given shape and the real Qwen3-0.6B settings otherwise."""
    return transformers.Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=geometry.hidden_size,
        intermediate_size=geometry.intermediate_size,
        num_hidden_layers=geometry.num_hidden_layers,
        num_attention_heads=geometry.num_attention_heads,
        num_key_value_heads=geometry.num_key_value_heads,
        head_dim=geometry.head_dim,
        hidden_act="silu",
        max_position_embeddings=40960,
        rms_norm_eps=1e-6,
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=geometry.num_hidden_layers,
        initializer_range=_INITIALIZER_RANGE,
        tie_word_embeddings=tie_word_embeddings,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=eos_token_id,
        **_version_specific_config_kwargs(),
    )


def _version_specific_config_kwargs() -> dict[str, object]:
    # transformers 5 moved rope_theta into rope_parameters and renamed torch_dtype to dtype.
    if "rope_parameters" in inspect.signature(transformers.Qwen3Config.__init__).parameters:
        return {"rope_parameters": {"rope_type": "default", "rope_theta": _ROPE_THETA}, "dtype": "float32"}
    return {"rope_theta": _ROPE_THETA, "torch_dtype": "float32"}


def _random_causal_lm(config: transformers.Qwen3Config, seed: int) -> transformers.Qwen3ForCausalLM:
    torch.manual_seed(seed)
    model = transformers.Qwen3ForCausalLM(config)
    return model.eval()


def reranker_prompt(query: str, document: str, instruction: str = DEFAULT_RERANK_INSTRUCTION) -> str:
    """The official Qwen3-Reranker prompt; the score is P("yes") vs "no" at its last position."""
    return f"{RERANK_PREFIX}<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}{RERANK_SUFFIX}"


def _last_hidden_states(
    model: transformers.Qwen3ForCausalLM, tokenizer: transformers.PreTrainedTokenizerFast, texts: list[str]
) -> torch.Tensor:
    """Final (normed) hidden state at the last token of each text, in one batched forward pass."""
    # Right padding keeps the positions of real tokens unchanged, so the states equal unpadded ones exactly.
    batch = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="right", return_tensors="pt")
    with torch.no_grad():
        hidden = model.model(**batch).last_hidden_state
    last = batch["attention_mask"].sum(dim=1) - 1
    return hidden[torch.arange(len(texts)), last]


def _calibrate_yes_no_rows(
    model: transformers.Qwen3ForCausalLM, tokenizer: transformers.PreTrainedTokenizerFast, seed: int
) -> None:
    """Set the "yes"/"no" output rows so that reranker scores spread around 0.5 across documents.

    Random rows give a yes-no logit difference dominated by a component shared by every prompt (the
    prompts all end with the same suffix), so all scores sit near 0 or 1, or all near 0.5. Instead the rows
    become ``c ± v/2`` with ``v`` orthogonal to the mean final hidden state of a few calibration prompts and
    scaled so that the difference ``v·h`` has a fixed std over them.
    """
    texts = [reranker_prompt(query, document) for query, document in _CALIBRATION_PAIRS]
    weight = model.get_output_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    direction = torch.randn(weight.shape[1], generator=generator)
    hidden = _last_hidden_states(model, tokenizer, texts)
    mean = hidden.mean(dim=0)
    v = direction - (direction @ mean) / (mean @ mean) * mean
    v = v * (_YES_NO_LOGIT_STD / (hidden @ v).std())
    # With tied weights these rows are also the input embeddings of "yes"/"no" (the system prompt contains
    # both), which shifts the hidden states slightly; not worth a second 0.6B forward pass.
    with torch.no_grad():
        centre = (weight[YES_TOKEN_ID] + weight[NO_TOKEN_ID]) / 2
        weight[YES_TOKEN_ID] = centre + v / 2
        weight[NO_TOKEN_ID] = centre - v / 2


def _save_tokenizer(tokenizer: transformers.PreTrainedTokenizerFast, path: Path) -> None:
    tokenizer.save_pretrained(path)
    # transformers 5 records its internal class name "TokenizersBackend", which transformers 4 cannot resolve;
    # "PreTrainedTokenizerFast" loads the same tokenizer.json under both.
    config_path = path / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_reranker_checkpoint(
    path: str | Path, *, geometry: Qwen3Geometry = TINY, tied: bool = True, seed: int = 0
) -> Path:
    """Write a random Qwen3ForCausalLM plus the reranker tokenizer into ``path`` (created if missing)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model = _random_causal_lm(qwen3_config(geometry, tie_word_embeddings=tied), seed)
    tokenizer = build_qwen3_tokenizer(append_endoftext=False)
    _calibrate_yes_no_rows(model, tokenizer, seed)
    model.save_pretrained(path)
    _save_tokenizer(tokenizer, path)
    return path


def write_embedding_checkpoint(
    path: str | Path, *, geometry: Qwen3Geometry = TINY, as_causal_lm: bool = False, seed: int = 0
) -> Path:
    """Write a random Qwen3 embedding model plus the embedding tokenizer into ``path`` (created if missing).

    The base model is always taken from the same seeded Qwen3ForCausalLM, so ``as_causal_lm=True`` and
    ``False`` hold identical decoder weights and yield the same embeddings.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = qwen3_config(geometry, tie_word_embeddings=False, eos_token_id=ENDOFTEXT_ID)
    model = _random_causal_lm(config, seed)
    (model if as_causal_lm else model.model).save_pretrained(path)
    _save_tokenizer(build_qwen3_tokenizer(append_endoftext=True), path)
    return path
