"""WEB_PROCESSES' default counts the cores a container may use: its CPU set capped by a CPU quota."""

import os

import pytest

from anomalyhub.env import usable_cores

HOST = len(os.sched_getaffinity(0))


def _v2(tmp_path, text):
    (tmp_path / "cpu.max").write_text(text)
    return str(tmp_path)


def _v1(tmp_path, quota, period="100000"):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    return str(tmp_path)


@pytest.mark.parametrize(("text", "expected"), [
    ("100000 100000\n", 1),  # --cpus 1
    ("50000 100000\n", 1),  # half a core still runs one process
    ("max 100000\n", HOST),  # no quota
])
def test_cgroup_v2_quota_caps_the_cpu_set(tmp_path, text, expected):
    assert usable_cores(_v2(tmp_path, text)) == min(expected, HOST)


def test_a_fractional_quota_rounds_up(tmp_path):
    if HOST < 2:
        pytest.skip("needs a CPU set of 2 cores or more")
    assert usable_cores(_v2(tmp_path, "150000 100000")) == 2


def test_a_quota_above_the_cpu_set_changes_nothing(tmp_path):
    assert usable_cores(_v2(tmp_path, f"{(HOST + 8) * 100000} 100000")) == HOST


@pytest.mark.parametrize(("quota", "expected"), [("100000", 1), ("-1", HOST)])
def test_cgroup_v1_quota(tmp_path, quota, expected):
    assert usable_cores(_v1(tmp_path, quota)) == expected


def test_no_cgroup_files_means_the_cpu_set(tmp_path):
    assert usable_cores(str(tmp_path / "missing")) == HOST


def test_garbage_in_cpu_max_is_ignored(tmp_path):
    assert usable_cores(_v2(tmp_path, "nonsense")) == HOST
