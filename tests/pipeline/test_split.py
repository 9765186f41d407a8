from collections import Counter

import pytest

from pipeline.split import SPLITS, assign_split, split_fraction


def test_split_is_a_function_of_seed_dataset_and_id():
    ids = [f"P{i:04d}" for i in range(200)]
    first = [assign_split("dota", i, seed=3) for i in ids]
    # Same answer in any order, with any other images around.
    assert [assign_split("dota", i, seed=3) for i in reversed(ids)] == first[::-1]
    assert assign_split("dota", "P0007", seed=3) == first[7]
    # Seed and dataset both matter.
    assert [assign_split("dota", i, seed=4) for i in ids] != first
    assert [assign_split("ucmerced", i, seed=3) for i in ids] != first


def test_split_follows_the_ratios():
    counts = Counter(assign_split("dota", f"P{i:05d}") for i in range(20_000))
    assert set(counts) == set(SPLITS)
    assert counts["train"] / 20_000 == pytest.approx(0.8, abs=0.015)
    assert counts["val"] / 20_000 == pytest.approx(0.1, abs=0.01)
    assert counts["test"] / 20_000 == pytest.approx(0.1, abs=0.01)


def test_degenerate_ratios():
    ids = [str(i) for i in range(500)]
    assert {assign_split("d", i, ratios=(1.0, 0.0, 0.0)) for i in ids} == {"train"}
    assert {assign_split("d", i, ratios=(0.0, 0.0, 1.0)) for i in ids} == {"test"}
    assert {assign_split("d", i, ratios=(0.5, 0.5, 0.0)) for i in ids} == {"train", "val"}
    with pytest.raises(ValueError, match="3 split ratios"):
        assign_split("d", "x", ratios=(0.5, 0.5))


def test_fraction_is_uniform_in_unit_interval():
    values = [split_fraction("d", str(i), 0) for i in range(5000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.02)
