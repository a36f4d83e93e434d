"""Per-key helpers: (key, time) search in both of its modes, key codes, late rows."""

import numpy as np
import pytest

from detection.rules.grouping import NEVER, KeyRegistry, PairIndex, late_rows
from detection.rules.windowing import Grid, StepRuns


@pytest.mark.parametrize("scale", [1, 10**17])  # the second forces the per-key fallback
def test_pair_index_matches_brute_force(scale):
    rng = np.random.default_rng(1)
    codes = np.sort(rng.integers(0, 5, 300))
    times = rng.integers(-20, 20, 300) * scale
    order = np.lexsort((times, codes))
    codes, times = codes[order], times[order]
    index = PairIndex(codes, times)
    assert (index.composite is None) == (scale > 1)
    q_codes, q_times = rng.integers(0, 6, 200), rng.integers(-25, 25, 200) * scale
    pairs = list(zip(codes.tolist(), times.tolist(), strict=True))
    # searchsorted 'left' on (code, time) = how many rows sort strictly before the query
    expected = [sum(p < (c, t) for p in pairs) for c, t in zip(q_codes.tolist(), q_times.tolist(), strict=True)]
    assert index.find(q_codes, q_times).tolist() == expected


def test_registry_codes_are_stable_across_batches_and_types():
    reg = KeyRegistry()
    assert reg.encode(np.array([5, 3, 5]), 3).tolist() == [1, 0, 1] and reg.values == [3, 5]
    first = {3: 0, 5: 1}
    again = reg.encode(np.array([3, 5, 70_000]), 3).tolist()
    assert again[:2] == [first[3], first[5]] and reg.values[again[2]] == 70_000
    strings = KeyRegistry()
    assert strings.encode(np.array(["b", "a", "b"], dtype=object), 3).tolist() == [1, 0, 1]
    assert strings.values == ["a", "b"]
    restored = KeyRegistry(reg.values)
    assert restored.encode(np.array([70_000, 3]), 2).tolist() == [again[2], first[3]]


def test_late_rows_follow_each_keys_own_history():
    last = np.array([10, NEVER])
    late = late_rows(np.array([0, 1, 0, 1]), np.array([9, 5, 12, 4]), last)
    assert late.tolist() == [True, False, False, True]
    assert late_rows(np.array([0, 1]), np.array([10, 11]), last) is None


@pytest.mark.parametrize("keys", [
    [3, 1, 3, 2, 0, 1],  # dense small ints: the known-range shortcut once all are seen
    [70_000, 5, 70_000, 12],  # sparse small ints: lookup of every row
    ["b", "a", "c", "a"],  # np.unique path
    [2**40, 7, 2**40],  # beyond the lookup table
])
def test_encoding_some_rows_registers_every_key(keys):
    batch = np.array(keys, dtype=object if isinstance(keys[0], str) else np.int64)
    rows = np.array([1, len(keys) - 1])
    full, some = KeyRegistry(), KeyRegistry()
    for _ in range(3):  # a first batch, then batches whose keys are all known
        assert some.encode(batch, len(batch), rows).tolist() == full.encode(batch, len(batch))[rows].tolist()
        assert some.values == full.values
    assert some.encode(batch, len(batch), np.array([], dtype=np.int64)).tolist() == []
    assert KeyRegistry().encode(None, 5, rows).tolist() == [0, 0]


def test_a_new_key_next_to_a_known_range_is_registered():
    reg = KeyRegistry()
    for _ in range(3):
        reg.encode(np.array([0, 1, 2, 3]), 4)
    assert reg.encode(np.array([2, 4, 3]), 3, np.array([1])).tolist() == [4] and reg.values == [0, 1, 2, 3, 4]
    assert reg.encode(np.array([4, 0]), 2).tolist() == [4, 0]


def test_step_runs_find_each_keys_first_row_at_a_grid_end():
    rng = np.random.default_rng(2)
    codes, times = rng.integers(0, 4, 300), rng.integers(-20, 100, 300)
    order = np.lexsort((times, codes))
    codes, times = codes[order], times[order]
    grid = Grid(7, 5, 10)
    runs = StepRuns(grid, codes, times)
    assert len(runs.codes) < len(codes)  # fewer runs than rows is the point
    q_codes, q_ks = rng.integers(0, 4, 200), rng.integers(-8, 25, 200)
    pairs = list(zip(codes.tolist(), times.tolist(), strict=True))
    # The first row at or past the grid end = how many rows sort strictly before (code, end).
    expected = [sum(p < (c, int(grid.end(k))) for p in pairs) for c, k in zip(q_codes.tolist(), q_ks.tolist(), strict=True)]
    assert runs.first_row(q_codes, q_ks).tolist() == expected
