"""Per-key helpers: (key, time) search in both of its modes, key codes, late rows."""

import numpy as np
import pytest

from detection.rules.grouping import NEVER, KeyRegistry, PairIndex, late_rows


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
