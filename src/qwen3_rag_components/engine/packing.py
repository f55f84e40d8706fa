"""Pack planning: dedup, length sort and a greedy token-budget plan. Pure Python, no torch.

A *group* is one shared prefix (the reranker's query part; empty for embeddings) and the *items* that attend to it
(documents or texts). A pack holds whole items of one or more groups; each group present in a pack costs its prefix
once, so the budget counts ``sum(prefix lengths of groups present) + sum(item lengths)``.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def dedup(keys: Sequence[K]) -> tuple[list[K], list[int]]:
    """Unique keys in first-seen order and, for every input, the index of its unique key."""
    first_index: dict[K, int] = {}
    inverse = [first_index.setdefault(key, len(first_index)) for key in keys]
    return list(first_index), inverse


@dataclass
class PackGroup:
    group: int  # index into the caller's prefixes
    items: list[int] = field(default_factory=list)  # indices into the caller's items, ascending length


@dataclass
class Pack:
    groups: list[PackGroup] = field(default_factory=list)
    num_tokens: int = 0

    @property
    def num_items(self) -> int:
        return sum(len(g.items) for g in self.groups)


def plan_packs(
    prefix_lengths: Sequence[int],
    item_groups: Sequence[int],
    item_lengths: Sequence[int],
    *,
    max_tokens: int,
    max_items: int | None = None,
    subset: Sequence[int] | None = None,
) -> list[Pack]:
    """Greedy packing of items sorted by (group, length) under ``max_tokens`` and ``max_items`` per pack.

    Sorting by group first keeps each prefix in as few packs as possible; sorting by length inside a group keeps the
    items of one pack of similar length, which keeps the attention buckets dense. An item that alone exceeds
    ``max_tokens`` gets a pack of its own: nothing is dropped. ``subset`` plans only those item indices.
    """
    items = range(len(item_lengths)) if subset is None else subset
    order = sorted(items, key=lambda i: (item_groups[i], item_lengths[i], i))
    packs: list[Pack] = []
    pack = Pack()
    for item in order:
        group = item_groups[item]
        opens_group = not pack.groups or pack.groups[-1].group != group
        cost = item_lengths[item] + (prefix_lengths[group] if opens_group else 0)
        full = max_items is not None and pack.num_items >= max_items
        if pack.groups and (full or pack.num_tokens + cost > max_tokens):
            packs.append(pack)
            pack, opens_group = Pack(), True
            cost = item_lengths[item] + prefix_lengths[group]
        if opens_group:
            pack.groups.append(PackGroup(group))
        pack.groups[-1].items.append(item)
        pack.num_tokens += cost
    if pack.groups:
        packs.append(pack)
    return packs
