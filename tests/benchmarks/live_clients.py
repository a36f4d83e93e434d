"""The live benchmark's client processes (bench_live starts them; no Django in here).

    python -m tests.benchmarks.live_clients subscribe CONFIG.json OUT.json
    python -m tests.benchmarks.live_clients post CONFIG.json OUT.json

`subscribe`: N WebSocket subscribers on /ws/v1/live/ (one asyncio loop), each subscribed to its
share of the series, plus the raw Redis baseline: a PUBLISH on the channel layer's db received by
a SUBSCRIBE connection in the same loop, so both see the same scheduling noise. Prints "READY"
once every socket is subscribed, then records every tick/anomaly event's arrival time until it
has every expected anomaly delivery (or its deadline), and writes what it saw to OUT.json.

`post`: the load generator. POST r (r = 0, 1, ...) of the schedule is due at start + r * period;
a pacer hands it to one of a few keep-alive HTTP/1.1 connections (threads), which stamp the send
time just before writing the request. POSTs still waiting `grace_seconds` after the last one was
due are not sent (status "not_sent"), which bounds the run when the server falls behind. Writes
per-POST send/answer times and statuses.

All times are time.monotonic() (CLOCK_MONOTONIC: one clock for every process on the machine).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import sys
import threading
import time
from datetime import datetime


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _dump(path: str, data: dict) -> None:
    with open(path, "w") as f:
        json.dump(data, f)


def iso_to_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


# --- subscribers -------------------------------------------------------------------------------

class Subscriber:
    def __init__(self, index: int, series: list[int]):
        self.index = index
        self.series = series
        self.ticks: list[tuple[int, int, float]] = []  # (series, first point ts ms, arrival)
        self.anomalies: list[tuple[int, int, int, float]] = []  # (series, ts ms, anomaly id, arrival)
        self.gaps = 0  # seq numbers skipped
        self.errors: list[dict] = []
        self.closed: str | None = None
        self.last_seq: dict[int, int] = {}


async def _subscriber(cfg: dict, sub: Subscriber, ready: asyncio.Event, counter: dict, done: asyncio.Event):
    from websockets.asyncio.client import connect

    async with connect(cfg["ws_url"], additional_headers={"Authorization": f"Bearer {cfg['api_key']}"},
                       open_timeout=20, max_queue=None, ping_interval=None) as ws:
        welcome = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"subscriber {sub.index}: expected welcome, got {welcome}")
        await ws.send(json.dumps({"action": "subscribe", "series": sub.series}))
        reply = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if reply.get("type") != "subscribed":
            raise RuntimeError(f"subscriber {sub.index}: subscribe refused: {reply}")
        counter["ready"] += 1
        if counter["ready"] == cfg["subscribers"]:
            ready.set()
        ticks, anomalies, monotonic, loads = sub.ticks, sub.anomalies, time.monotonic, json.loads
        try:
            async for raw in ws:
                now = monotonic()
                event = loads(raw)
                kind = event.get("type")
                if kind == "tick":
                    ticks.append((event["series"], event["points"][0][0], now))
                elif kind == "anomaly":
                    anomalies.append((event["series"], iso_to_ms(event["ts"]), event["id"], now))
                    counter["anomalies"] += 1
                    if counter["anomalies"] >= cfg["expected_deliveries"]:
                        done.set()
                elif kind == "error":
                    sub.errors.append(event)
                    continue
                else:
                    continue
                subscription = event["subscription"]
                previous = sub.last_seq.get(subscription, 0)
                if event["seq"] != previous + 1:
                    sub.gaps += event["seq"] - previous - 1
                sub.last_seq[subscription] = event["seq"]
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 — reported, the run's counts will show the loss
            sub.closed = f"{type(exc).__name__}: {exc}"
        else:
            sub.closed = f"closed by server: {ws.close_code} {ws.close_reason}"


async def _redis_baseline(cfg: dict, samples: list[float], stop: asyncio.Event):
    """Raw Redis PUBLISH -> SUBSCRIBE delivery on the channel layer's db, every `period` s."""
    import redis.asyncio as aioredis

    channel = "bench:live:baseline"
    sub_conn = aioredis.Redis.from_url(cfg["redis_url"])
    pub_conn = aioredis.Redis.from_url(cfg["redis_url"])
    pubsub = sub_conn.pubsub()
    await pubsub.subscribe(channel)
    while (await pubsub.get_message(timeout=1.0)) is None:  # the subscribe confirmation
        pass
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            await pub_conn.publish(channel, repr(t0))
            while True:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=2.0)
                if message is not None:
                    break
            samples.append(time.monotonic() - float(message["data"]))
            await asyncio.sleep(cfg["baseline_period"])
    finally:
        await pubsub.aclose()
        await sub_conn.aclose()
        await pub_conn.aclose()


async def subscribe_main(cfg: dict, out: str) -> None:
    subs = [Subscriber(i, s) for i, s in enumerate(cfg["subscriptions"])]
    ready, done, stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
    counter = {"ready": 0, "anomalies": 0}
    tasks = [asyncio.create_task(_subscriber(cfg, s, ready, counter, done)) for s in subs]
    baseline: list[float] = []
    try:
        waiter = asyncio.create_task(ready.wait())
        finished, _ = await asyncio.wait([waiter, *tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if waiter not in finished:
            for t in finished:
                t.result()  # raises the subscriber's failure
            raise RuntimeError("subscribers not ready within 60 s")
        base_task = asyncio.create_task(_redis_baseline(cfg, baseline, stop))
        loop = asyncio.get_running_loop()

        def watch_stdin() -> None:  # "STOP" (or EOF) from bench_live: give up waiting for the rest
            sys.stdin.readline()
            loop.call_soon_threadsafe(done.set)

        threading.Thread(target=watch_stdin, daemon=True).start()
        print("READY", flush=True)
        # Runs until every expected delivery arrived, or the deadline (monotonic) passes.
        remaining = cfg["deadline"] - time.monotonic()
        try:
            await asyncio.wait_for(done.wait(), max(1.0, remaining))
            await asyncio.sleep(cfg.get("grace_seconds", 1.0))  # late duplicates, stray events
        except TimeoutError:
            pass
        stop.set()
        try:
            await asyncio.wait_for(base_task, 5)
        except (TimeoutError, Exception):  # noqa: BLE001 — the baseline keeps what it measured
            base_task.cancel()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    _dump(out, {"subscribers": [{"index": s.index, "series": s.series, "ticks": s.ticks,
                                 "anomalies": s.anomalies, "gaps": s.gaps, "errors": s.errors,
                                 "closed": s.closed} for s in subs],
                "redis_baseline_s": baseline})


# --- poster ------------------------------------------------------------------------------------

def post_main(cfg: dict, out: str) -> None:
    bodies = [b.encode() for b in cfg["bodies"]]
    period, start = cfg["period"], cfg["start"]
    host, port, path = cfg["host"], cfg["port"], cfg["path"]
    headers = {"Authorization": f"Bearer {cfg['api_key']}", "Content-Type": "application/json"}
    sent = [0.0] * len(bodies)
    answered = [0.0] * len(bodies)
    statuses: list = [None] * len(bodies)
    work: queue.SimpleQueue = queue.SimpleQueue()
    hard_stop = start + len(bodies) * period + cfg["grace_seconds"]

    def worker() -> None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        conn.connect()
        while True:
            r = work.get()
            if r is None:
                conn.close()
                return
            if time.monotonic() > hard_stop:  # the server fell this far behind: not sent at all
                statuses[r] = "not_sent"
                continue
            try:
                sent[r] = time.monotonic()
                conn.request("POST", path, body=bodies[r], headers=headers)
                response = conn.getresponse()
                response.read()
                statuses[r] = response.status
            except (OSError, http.client.HTTPException) as exc:
                statuses[r] = type(exc).__name__
                conn.close()
            answered[r] = time.monotonic()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(cfg["connections"])]
    for t in threads:
        t.start()
    late = 0
    for r in range(len(bodies)):
        due = start + r * period
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        elif delay < -period:
            late += 1
        work.put(r)
    for _ in threads:
        work.put(None)
    for t in threads:
        t.join(timeout=60)
    _dump(out, {"sent": sent, "answered": answered, "statuses": statuses, "late_dispatches": late,
                "start": start, "period": period})


def main(argv: list[str]) -> int:
    mode, config, out = argv
    cfg = _load(config)
    if mode == "subscribe":
        asyncio.run(subscribe_main(cfg, out))
    elif mode == "post":
        post_main(cfg, out)
    else:
        raise SystemExit(f"unknown mode {mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
