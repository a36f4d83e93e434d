"""Concurrent writers whose batches commit out of order, for the late-points test and benchmark.

One trade series at TICKS_PER_S: batches of BATCH ticks, each split in two halves that interleave
(every other tick), so the two overlap in time; every group of WRITERS batches is shuffled and
sent at once by WRITERS threads, so commits reorder as concurrent clients make them; one batch in
RETRY_EVERY is resent with its Idempotency-Key RETRY_AFTER_S later (a client that timed out: the
resend stores nothing); one in LATE_EVERY is held back and only sent RETRY_AFTER_S later (a first
attempt lost in transit), by which time detection has streamed well past its ticks. Normal prices
sit near 100; one tick in every SPIKE_EVERY batches is a spike at 500, so `price > 200` (a row
rule) fires exactly at the spikes, and `max(price) > 200` over 1 s windows (a window rule) exactly
at the ends of the windows holding one.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from dataclasses import dataclass, field

import requests

TICKS_PER_S = 2000
BATCH = 50
WRITERS = 4
SPIKE_EVERY = 3
RETRY_EVERY = 10
LATE_EVERY = 12
RETRY_AFTER_S = 1.5
WINDOW_MS = 1000
ROW_RULE = "price > 200"
WINDOW_RULE = "max(price) > 200"
NORMAL, SPIKE = 100.0, 500.0


@dataclass
class Plan:
    """What the writers send and what detection must find: spike times (ms) and window ends (ms)."""

    base_ms: int
    sends: list[tuple[float, str, list[dict]]]  # (due, seconds after the start; idempotency key; ticks)
    spikes: set[int] = field(default_factory=set)
    ticks: int = 0
    last_ms: float = 0.0
    late_posts: int = 0
    resent_posts: int = 0

    @property
    def window_ends(self) -> set[int]:
        return {(t // WINDOW_MS + 1) * WINDOW_MS for t in self.spikes}


def plan(seconds: float, base_ms: int, seed: int = 22) -> Plan:
    """The schedule for `seconds` of load; base_ms a multiple of WINDOW_MS (window ends are then
    whole seconds). The first batch goes alone first: it fixes the rule's window grid."""
    rng = random.Random(seed)
    n_batches = int(seconds * TICKS_PER_S / BATCH)
    step_ms = 1000 / TICKS_PER_S
    out = Plan(base_ms, [])
    batches = []
    for b in range(n_batches):
        ticks = [{"ts": round(base_ms + (b * BATCH + i) * step_ms, 3), "price": NORMAL + rng.random(), "size": 1.0}
                 for i in range(BATCH)]
        if b % SPIKE_EVERY == SPIKE_EVERY - 1:
            spike = rng.randrange(BATCH)
            ticks[spike]["price"] = SPIKE
            out.spikes.add(int(ticks[spike]["ts"]))
        batches.append((b, [ticks[0::2], ticks[1::2]]))  # two halves overlapping in time
    out.ticks = n_batches * BATCH
    period = BATCH / TICKS_PER_S
    first, *rest = batches
    out.sends += [(0.0, f"late-{first[0]}-{h}", half) for h, half in enumerate(first[1])]
    for g in range(0, len(rest), WRITERS):
        group = rest[g:g + WRITERS]
        rng.shuffle(group)
        due = 0.5 + (g + WRITERS) * period
        for b, halves in group:
            for h, half in enumerate(halves):
                key = f"late-{b}-{h}"
                if b % LATE_EVERY == 0:
                    out.late_posts += 1
                    out.sends.append((due + RETRY_AFTER_S, key, half))
                    continue
                out.sends.append((due, key, half))
                if b % RETRY_EVERY == 0:
                    out.resent_posts += 1
                    out.sends.append((due + RETRY_AFTER_S, key, half))
    # A last tick after everything closes the last window with a spike in it.
    end_ms = out.last_ms = base_ms + (n_batches * BATCH) * step_ms + 2 * WINDOW_MS
    out.sends.append((max(d for d, _, _ in out.sends) + 0.5, "late-end", [{"ts": end_ms, "price": NORMAL,
                                                                             "size": 1.0}]))
    out.ticks += 1
    out.sends.sort(key=lambda s: s[0])
    return out


def send(base_url: str, api_key: str, series_id: int, schedule: Plan, timeout_s: float = 120) -> dict:
    """Sends the schedule with WRITERS threads, each its own keep-alive connection; every POST is
    retried with its key until it is answered 201 (or 200 for a recognised resend)."""
    todo: queue.Queue = queue.Queue()
    for item in schedule.sends:
        todo.put(item)
    stats = {"posts": 0, "duplicates": 0, "errors": {}, "behind_s": 0.0}
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    deadline = start + max(d for d, _, _ in schedule.sends) + timeout_s

    def writer():
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {api_key}"
        url = f"{base_url}/api/v1/series/{series_id}/points/"
        while True:
            try:
                due, key, ticks = todo.get_nowait()
            except queue.Empty:
                return
            wait = start + due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            while True:
                try:
                    r = session.post(url, json=ticks, headers={"Idempotency-Key": key}, timeout=30)
                    status = r.status_code
                except requests.RequestException as exc:
                    status = type(exc).__name__
                with lock:
                    if status in (200, 201):
                        stats["posts"] += 1
                        stats["duplicates"] += bool(status == 200 or r.json()["duplicate"])
                        stats["behind_s"] = max(stats["behind_s"], time.monotonic() - start - due)
                        break
                    stats["errors"][str(status)] = stats["errors"].get(str(status), 0) + 1
                if time.monotonic() > deadline:
                    raise AssertionError(f"POST {key} not answered 201 before the deadline (last {status})")
                time.sleep(0.2)

    threads = [threading.Thread(target=writer, daemon=True) for _ in range(WRITERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return stats
