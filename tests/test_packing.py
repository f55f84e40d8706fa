"""The pack planner: every item exactly once, budgets honoured, groups contiguous, lengths sorted."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from qwen3_rag_components.engine.packing import dedup, plan_packs


def test_dedup_keeps_first_seen_order():
    assert dedup(["b", "a", "b", "c", "a"]) == (["b", "a", "c"], [0, 1, 0, 2, 1])
    assert dedup([]) == ([], [])


def test_plan_counts_each_prefix_once_per_pack():
    packs = plan_packs([10], [0, 0, 0], [5, 5, 5], max_tokens=20)
    assert [(p.num_tokens, [g.items for g in p.groups]) for p in packs] == [(20, [[0, 1]]), (15, [[2]])]


def test_item_longer_than_budget_gets_its_own_pack():
    packs = plan_packs([4], [0, 0, 0], [3, 100, 2], max_tokens=10)
    assert [[g.items for g in p.groups] for p in packs] == [[[2, 0]], [[1]]]
    assert packs[1].num_tokens == 104


def test_groups_share_a_pack():
    packs = plan_packs([3, 4], [1, 0, 1], [2, 2, 2], max_tokens=100)
    assert len(packs) == 1
    assert [(g.group, g.items) for g in packs[0].groups] == [(0, [1]), (1, [0, 2])]
    assert packs[0].num_tokens == 3 + 4 + 6


@given(
    prefix_lengths=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    data=st.data(),
    max_tokens=st.integers(1, 200),
    max_items=st.one_of(st.none(), st.integers(1, 6)),
)
def test_plan_properties(prefix_lengths, data, max_tokens, max_items):
    n_groups = len(prefix_lengths)
    items = data.draw(st.lists(st.tuples(st.integers(0, n_groups - 1), st.integers(1, 80)), max_size=40))
    groups, lengths = [g for g, _ in items], [n for _, n in items]
    packs = plan_packs(prefix_lengths, groups, lengths, max_tokens=max_tokens, max_items=max_items)

    placed = [i for p in packs for g in p.groups for i in g.items]
    assert sorted(placed) == list(range(len(items)))  # every item exactly once
    for pack in packs:
        assert pack.groups and all(g.items for g in pack.groups)
        assert pack.num_tokens == sum(prefix_lengths[g.group] + sum(lengths[i] for i in g.items) for g in pack.groups)
        assert pack.num_tokens <= max_tokens or pack.num_items == 1
        assert max_items is None or pack.num_items <= max_items
        assert len({g.group for g in pack.groups}) == len(pack.groups)  # a group appears once per pack
        for g in pack.groups:
            assert all(groups[i] == g.group for i in g.items)
            assert [lengths[i] for i in g.items] == sorted(lengths[i] for i in g.items)


def test_plan_a_subset_of_items():
    packs = plan_packs([2], [0, 0, 0, 0], [5, 1, 3, 2], max_tokens=100, subset=[2, 0])
    assert [[g.items for g in p.groups] for p in packs] == [[[2, 0]]]
    assert packs[0].num_tokens == 2 + 3 + 5
