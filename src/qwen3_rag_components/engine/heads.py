"""The last stage: from each item's final hidden state to a score (reranker) or a vector (embedder).

The forward returns the final-norm hidden state at each item's last token ([N, C]); for the embedder that token is
the appended ``<|endoftext|>``, so this is already the official last-token pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import InvalidParameter


class YesNoHead:
    """The official reranker score from the "yes" and "no" rows of the LM head only.

    ``P(yes) = softmax([l_no, l_yes])[1] = sigmoid(l_yes - l_no)``; the other 151k rows of the head never matter.
    """

    def __init__(self, head_weight: torch.Tensor, yes_id: int, no_id: int) -> None:
        self.weight = head_weight.detach()[[yes_id, no_id]].float().clone()  # [2, C] fp32 (the embedding when tied)

    def __call__(self, hidden: torch.Tensor, *, return_logits: bool = False) -> list[float]:
        """hidden: [N, C] -> N scores: P(yes), or the raw ``l_yes - l_no`` with ``return_logits``."""
        logits = hidden.float() @ self.weight.T  # [N, 2] (yes, no)
        margin = logits[:, 0] - logits[:, 1]
        return (margin if return_logits else torch.sigmoid(margin)).tolist()


def check_dimensions(dimensions: object, hidden_size: int) -> None:
    """``dimensions`` must be ``None`` or an int from 1 to the hidden size (MRL keeps a prefix of the vector)."""
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= hidden_size
    ):
        raise InvalidParameter(
            "dimensions",
            f"dimensions={dimensions!r} is out of range: use an int from 1 to {hidden_size} (this model's "
            "hidden size), or None for the full vector.",
        )


def embedding_head(hidden: torch.Tensor, dimensions: int | None, normalize: bool) -> torch.Tensor:
    """hidden: [N, C] -> [N, dimensions] fp32: the MRL cut (first values), then L2 normalisation."""
    vectors = hidden.float()[:, :dimensions]
    return F.normalize(vectors, p=2, dim=-1) if normalize else vectors
