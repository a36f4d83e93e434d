"""What one request costs the real server: wall time, CPU time and peak memory of its processes.

Usable by any abuse scenario (tests/reliability/test_abuse_*.py):

    with private_stack(["Org"]) as (_, server, keys):   # tests.reliability.private_services
        with measured(server.proc.pid) as cost:
            response = requests.post(...)
        cost.wall_s, cost.cpu_s, cost.peak_rss_mb     # and cost.row() for report.record(...)

The processes are honcho (the Procfile) and every process under it (gunicorn and its uvicorn web processes, Celery
workers), looked up at the start and again while sampling, so work a request hands to a worker is
counted too. CPU is user + system time summed over them (psutil), so it includes what other
requests did meanwhile: measure one scenario at a time. Peak RSS is the largest resident set of any
ONE of the processes, sampled every `interval` seconds while the block runs (a spike shorter than
that can be missed; growth that stays is not).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil

MB = 1024 * 1024


def _tree(root_pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(root_pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dataclass
class Cost:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    rss_before_mb: float = 0.0
    _cpu: dict[int, float] = field(default_factory=dict, repr=False)

    def row(self) -> dict:
        """The figures as report columns."""
        return {"wall_s": round(self.wall_s, 3), "cpu_s": round(self.cpu_s, 3),
                "peak_rss_mb": round(self.peak_rss_mb, 1)}


def _cpu_times(processes: list[psutil.Process]) -> dict[int, float]:
    seen = {}
    for process in processes:
        try:
            times = process.cpu_times()
            seen[process.pid] = times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return seen


def _max_rss(processes: list[psutil.Process]) -> float:
    peak = 0
    for process in processes:
        try:
            peak = max(peak, process.memory_info().rss)
        except psutil.NoSuchProcess:
            pass
    return peak / MB


@contextmanager
def measured(root_pid: int, interval: float = 0.02) -> Iterator[Cost]:
    """Measures the process tree under `root_pid` while the block runs; see the module docstring."""
    cost = Cost()
    processes = _tree(root_pid)
    start_cpu = _cpu_times(processes)
    cost.rss_before_mb = cost.peak_rss_mb = _max_rss(processes)
    done = threading.Event()
    known = {p.pid: p for p in processes}
    last_cpu = dict(start_cpu)

    def sample() -> None:
        while not done.is_set():
            for process in _tree(root_pid):  # a worker started meanwhile counts from its start
                known.setdefault(process.pid, process)
            current = list(known.values())
            cost.peak_rss_mb = max(cost.peak_rss_mb, _max_rss(current))
            last_cpu.update(_cpu_times(current))  # a process that exits keeps its last reading
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    began = time.monotonic()
    sampler.start()
    try:
        yield cost
    finally:
        cost.wall_s = time.monotonic() - began
        done.set()
        sampler.join()
        last_cpu.update(_cpu_times(list(known.values())))
        cost.peak_rss_mb = max(cost.peak_rss_mb, _max_rss(list(known.values())))
        cost.cpu_s = sum(cpu - start_cpu.get(pid, 0.0) for pid, cpu in last_cpu.items())
