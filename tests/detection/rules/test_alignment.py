"""Seed 002's alignment tables, band by band, transcribed independently of the implementation."""

import pytest

from detection.rules import RuleSyntaxError
from detection.rules.alignment import alignment_size, first_window_end, normalize_precision

S, MS_, MIN = 10**9, 10**6, 60 * 10**9

# (lowest step, highest step, alignmentSize) per band, as the seed's tables print them.
SECOND_PLAIN = [(1, 2, 2), (3, 3, 3), (4, 5, 5), (6, 10, 10), (11, 15, 15), (16, 20, 20), (21, 30, 30),
                (31, 10**6, 60)]
SECOND_ROUND = SECOND_PLAIN[:-1] + [
    (31, 60, 60), (61, 120, 120), (121, 180, 180), (181, 300, 300), (301, 600, 600), (601, 900, 900),
    (901, 1200, 1200), (1201, 1800, 1800), (1801, 10**6, 3600)]
MS_PLAIN = [(1, 2, 2), (3, 5, 5), (6, 10, 10), (11, 20, 20), (21, 25, 25), (26, 50, 50), (51, 100, 100),
            (101, 200, 200), (201, 250, 250), (251, 500, 500), (501, 1000, 1000), (1001, 2000, 2000),
            (2001, 3000, 3000), (3001, 5000, 5000), (5001, 10000, 10000), (10001, 15000, 15000),
            (15001, 20000, 20000), (20001, 30000, 30000), (30001, 10**9, 60000)]
MS_ROUND = MS_PLAIN[:-1] + [
    (30001, 60000, 60000), (60001, 120000, 120000), (120001, 300000, 300000), (300001, 600000, 600000),
    (600001, 900000, 900000), (900001, 1200000, 1200000), (1200001, 1800000, 1800000),
    (1800001, 10**10, 3600000)]
NS_PLAIN = [(1, 2, 2), (3, 5, 5), (6, 10, 10), (11, 20, 20), (21, 25, 25), (26, 50, 50), (51, 100, 100),
            (101, 200, 200), (201, 250, 250), (251, 500, 500), (501, 10**13, 1000)]
# roundTime=true: steps up to 1000ns use the plain table (the seed's first band reads "1000ns~1ms").
NS_ROUND = NS_PLAIN[:-1] + [(501, 1000, 1000)] + [
    (1001, MS_, MS_), (MS_ + 1, 10 * MS_, 10 * MS_), (10 * MS_ + 1, 100 * MS_, 100 * MS_),
    (100 * MS_ + 1, S, S), (S + 1, 2 * S, 2 * S), (2 * S + 1, 3 * S, 3 * S), (3 * S + 1, 5 * S, 5 * S),
    (5 * S + 1, 10 * S, 10 * S), (10 * S + 1, 15 * S, 15 * S), (15 * S + 1, 20 * S, 20 * S),
    (20 * S + 1, 30 * S, 30 * S), (30 * S + 1, 10**14, MIN)]

TABLES = [("s", False, SECOND_PLAIN), ("s", True, SECOND_ROUND), ("min", False, SECOND_PLAIN),
          ("min", True, SECOND_ROUND), ("ms", False, MS_PLAIN), ("ms", True, MS_ROUND),
          ("ns", False, NS_PLAIN), ("ns", True, NS_ROUND)]
CASES = [(precision, round_time, step, size)
         for precision, round_time, bands in TABLES
         for low, high, size in bands
         for step in sorted({low, high})]


@pytest.mark.parametrize(("precision", "round_time", "step", "expected"), CASES)
def test_alignment_size_matches_seed_table(precision, round_time, step, expected):
    assert alignment_size(precision, step, round_time) == expected


def test_date_windows_are_not_adjusted():
    assert alignment_size("date", 7, True) == 1
    assert first_window_end(19000, "date", 7) == 19007


def test_seed_worked_example_first_window_start():
    # 2018.10.08T01:01:01.365, windowSize=120000, step=60000: the seed's formula
    # x/60000*60000 + 60000 - 120000 gives 01:00:00.000. (The seed prints 01:01:00.000, which
    # its own formula does not produce; Example 1's windows confirm the formula.)
    x = 1538960461365
    start = first_window_end(x, "ms", 60000) - 120000
    assert start == 1538960400000  # 2018.10.08T01:00:00.000
    assert first_window_end(x, "ms", 60000) - 60000 == 1538960460000  # with windowSize == step


def test_example_1_first_window_ends_at_003():
    # first record .002, step 3 -> alignment 5 -> start 0 + 3 - 6 = -3, end 3
    assert first_window_end(1538960461002, "ms", 3) == 1538960461003


@pytest.mark.parametrize(("name", "canonical"), [("TIMESTAMP", "ms"), ("DATETIME", "s"), ("second", "s"),
                                                 ("NANOTIMESTAMP", "ns"), ("MINUTE", "min"), ("DATE", "date")])
def test_precision_names(name, canonical):
    assert normalize_precision(name) == canonical


def test_unknown_precision_is_a_rule_error():
    with pytest.raises(RuleSyntaxError, match="precision"):
        normalize_precision("fortnight")
