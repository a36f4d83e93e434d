"""`manage.py rules_eval` end to end, including seed 002's Example 1."""

import io

import pytest
from django.core.management import CommandError, call_command

from detection.rules.timefmt import TimeFormat, parse_times

from .helpers import EXAMPLE_1_TEMPS

EXAMPLE_1_OUTPUT = """time,anomalyType,anomalyString
2018.10.08T01:01:01.003,0,temp > 65
2018.10.08T01:01:01.003,1,"temp > percentile(temp, 75)"
2018.10.08T01:01:01.005,1,"temp > percentile(temp, 75)"
2018.10.08T01:01:01.006,1,"temp > percentile(temp, 75)"
"""


def _csv(tmp_path, text: str):
    path = tmp_path / "data.csv"
    path.write_text(text)
    return str(path)


def _run(*args) -> str:
    out = io.StringIO()
    call_command("rules_eval", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def example_1(tmp_path):
    rows = [f"2018.10.08T01:01:01.{i + 2:03d},{t}" for i, t in enumerate(EXAMPLE_1_TEMPS)]
    return _csv(tmp_path, "time,temp\n" + "\n".join(rows) + "\n")


def test_example_1_prints_the_seed_rows(example_1):
    out = _run("--metrics", "temp > 65; temp > percentile(temp, 75)", "--time-column", "time",
               "--window-size", "6", "--step", "3", "--input", example_1)
    assert out == EXAMPLE_1_OUTPUT


def test_example_1_as_metacode(example_1):
    out = _run("--metrics", "<[temp > 65, temp>percentile(temp,75)]>", "--window-size", "6", "--step", "3",
               "--input", example_1)
    assert out == EXAMPLE_1_OUTPUT


def test_keyed_seconds_with_iso_dashes(tmp_path):
    path = _csv(tmp_path, "time,sym,price\n2024-01-02T09:30:00,A,10\n2024-01-02T09:30:01,B,20\n"
                          "2024-01-02T09:30:02,A,30\n2024-01-02T09:30:05,B,25\n")
    out = _run("--metrics", "price > prev(price)", "--key-column", "sym", "--input", path)
    assert out.splitlines() == ["time,sym,anomalyType,anomalyString", "2024-01-02T09:30:02,A,0,price > prev(price)",
                                "2024-01-02T09:30:05,B,0,price > prev(price)"]


def test_round_time_flag_and_nanoseconds(tmp_path):
    path = _csv(tmp_path, "time,x\n2024-01-02 09:30:00.000000001,1\n2024-01-02 09:30:00.000000500,1\n")
    out = _run("--metrics", "count(x) > 0", "--window-size", "100", "--step", "100", "--round-time", "false",
               "--input", path)
    assert out.splitlines()[1] == "2024-01-02 09:30:00.000000100,0,count(x) > 0"


@pytest.mark.parametrize(("args", "fragment"), [
    (["--metrics", "temp >"], "bad metrics: unexpected end"),
    (["--metrics", "tmp > 1"], "unknown column 'tmp'"),
    (["--metrics", "avg(temp) > 1"], "needs windowSize and step"),
    (["--metrics", "temp > 1", "--time-column", "ts"], "no column 'ts'"),
    (["--metrics", "temp > 1", "--key-column", "sym"], "no column 'sym'"),
    (["--metrics", "temp > 1", "--round-time", "maybe"], "true or false"),
])
def test_errors_are_command_errors(example_1, args, fragment):
    with pytest.raises(CommandError, match=fragment):
        _run(*args, "--input", example_1)


def test_bad_times_and_numbers(tmp_path):
    with pytest.raises(CommandError, match="cannot parse time 'yesterday'"):
        _run("--metrics", "x > 1", "--input", _csv(tmp_path, "time,x\nyesterday,1\n"))
    with pytest.raises(CommandError, match="invalid date"):
        _run("--metrics", "x > 1", "--input", _csv(tmp_path, "time,x\n2024-02-30T00:00:00,1\n"))
    with pytest.raises(CommandError, match="not a number"):
        _run("--metrics", "x > 1", "--input", _csv(tmp_path, "time,x\n2024-02-03T00:00:00,abc\n"))
    with pytest.raises(CommandError, match="cannot read"):
        _run("--metrics", "x > 1", "--input", str(tmp_path / "missing.csv"))


@pytest.mark.parametrize(("text", "precision", "value"), [
    ("2018.10.08T01:01:01.003", "ms", 1538960461003), ("2018.10.08T01:01:01", "s", 1538960461),
    ("2018-10-08T01:01:01.000000003", "ns", 1538960461000000003), ("2018.10.08T01:01", "min", 25649341),
    ("2018.10.08", "date", 17812), ("2018-10-08 01:01:01.5", "ms", 1538960461500),
])
def test_time_precision_follows_the_text_and_round_trips(text, precision, value):
    times, fmt = parse_times([text])
    assert (fmt.precision, int(times[0])) == (precision, value)
    expected = text if not text.endswith(".5") else "2018-10-08 01:01:01.500"
    assert fmt.format(value) == expected


def test_mixed_precisions_use_the_finest():
    times, fmt = parse_times(["2018.10.08T01:01:01", "2018.10.08T01:01:01.250"])
    assert fmt == TimeFormat("ms", ".", "T") and list(times) == [1538960461000, 1538960461250]
