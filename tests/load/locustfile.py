"""Locust users for `make load` (run by tests/load/__main__.py, which prepares the tenants and the
server). Several organizations at once:

- ApiReader: REST reads (points raw and 1-minute bars, anomalies, series, watchlists, me) and
  GraphQL queries with read keys, paced so that all readers together send LOAD_API_RPS requests/s.
- Ingester: one per organization, POST /api/v1/ingest/ of 100 ticks (timestamped now), together
  LOAD_TICKS_PER_S ticks/s; one POST in 50 carries a tick above the rule threshold (an anomaly).
- LiveSubscriber: WebSocket /ws/v1/live/ subscribers of their organization's series; each tick and
  anomaly event is recorded with its latency from the tick's timestamp (ingest -> delivered).
"""

import json
import os
import random
import time
from datetime import datetime

import websocket
from locust import FastHttpUser, User, between, constant_throughput, events, task

CONFIG = json.loads(open(os.environ["LOAD_CONFIG"]).read())
TENANTS = CONFIG["tenants"]
API_RPS = float(os.environ.get("LOAD_API_RPS", "300"))
TICKS_PER_S = float(os.environ.get("LOAD_TICKS_PER_S", "1000"))
READERS = int(os.environ.get("LOAD_READERS", "30"))
SUBSCRIBERS = int(os.environ.get("LOAD_SUBSCRIBERS", "16"))
GRAPHQL = os.environ.get("LOAD_GRAPHQL", "1") == "1"  # the runner probes /graphql/ and sets this
TICKS_PER_POST = 100
ANOMALY_EVERY = 50
GRAPHQL_QUERY = ("query($id: ID!) { series(id: $id) { symbol kind } "
                 "seriesList { totalCount } }")


def _tenant(index: int) -> dict:
    return TENANTS[index % len(TENANTS)]


class ApiReader(FastHttpUser):
    fixed_count = READERS
    wait_time = constant_throughput(API_RPS / READERS)
    _count = 0

    def on_start(self):
        ApiReader._count += 1
        self.tenant = _tenant(ApiReader._count)
        key = self.tenant["read_keys"][ApiReader._count % len(self.tenant["read_keys"])]
        self.headers = {"Authorization": f"Bearer {key}"}

    def _series(self) -> int:
        return random.choice(self.tenant["series"])["id"]

    def _get(self, path: str, name: str) -> None:
        with self.client.get(path, headers=self.headers, name=name, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")

    @task(3)
    def bars(self):
        self._get(f"/api/v1/series/{self._series()}/points/?resolution=1m&limit=500",
                  "GET /api/v1/series/[id]/points/?resolution=1m")

    @task(3)
    def ticks(self):
        self._get(f"/api/v1/series/{self._series()}/points/?limit=200", "GET /api/v1/series/[id]/points/ (raw)")

    @task(2)
    def anomalies(self):
        self._get(f"/api/v1/anomalies/?series={self._series()}&limit=20", "GET /api/v1/anomalies/?series=")

    @task(1)
    def series_list(self):
        self._get("/api/v1/series/?limit=20", "GET /api/v1/series/")

    @task(1)
    def watchlists(self):
        self._get("/api/v1/watchlists/", "GET /api/v1/watchlists/")

    @task(1)
    def me(self):
        self._get("/api/v1/me/", "GET /api/v1/me/")

    @task(2 if GRAPHQL else 0)
    def graphql(self):
        body = {"query": GRAPHQL_QUERY, "variables": {"id": str(self._series())}}
        with self.client.post("/graphql/", json=body, headers=self.headers, name="POST /graphql/ (series)",
                              catch_response=True) as response:
            if response.status_code != 200 or "errors" in (response.json() or {}):
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")


class Ingester(FastHttpUser):
    fixed_count = len(TENANTS)
    period = len(TENANTS) * TICKS_PER_POST / TICKS_PER_S  # seconds between one organization's POSTs
    _count = 0

    def on_start(self):
        self.tenant = _tenant(Ingester._count)
        Ingester._count += 1
        self.headers = {"Authorization": f"Bearer {self.tenant['ingest_key']}"}
        self.posts = 0
        # Each organization on its own phase: independent tenants do not post in step. (Started
        # together under constant_throughput, all of them POSTed within the same ~100 ms of every
        # period, a synchronized burst; its pacing counts from the spawn, so a sleep here did not
        # shift it.)
        time.sleep(random.uniform(0, self.period))
        self.due = time.monotonic()

    def wait_time(self):
        """Fixed pacing from this user's own phase: one POST every `period`."""
        self.due += self.period
        return max(0.0, self.due - time.monotonic())

    @task
    def ingest(self):
        now_ms = int(time.time() * 1000)
        symbols = [s["symbol"] for s in self.tenant["series"]]
        per_series = TICKS_PER_POST // len(symbols)
        points = {sym: [{"ts": now_ms - per_series + k, "price": round(100 + random.uniform(-5, 5), 2),
                         "size": random.randrange(1, 10) * 100} for k in range(per_series)] for sym in symbols}
        self.posts += 1
        if self.posts % ANOMALY_EVERY == 0:
            points[random.choice(symbols)][-1]["price"] = CONFIG["threshold"] * 2.5
        with self.client.post("/api/v1/ingest/", json={"points": points}, headers=self.headers,
                              name="POST /api/v1/ingest/ (100 ticks)", catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"HTTP {response.status_code}: {response.text[:200]}")


class LiveSubscriber(User):
    fixed_count = SUBSCRIBERS
    wait_time = between(0, 0)
    _count = 0

    def on_start(self):
        self.tenant = _tenant(LiveSubscriber._count)
        LiveSubscriber._count += 1
        url = self.host.replace("http", "ws", 1) + "/ws/v1/live/"
        started = time.perf_counter()
        self.ws = websocket.create_connection(url, header=[f"Authorization: Bearer {self.tenant['read_keys'][0]}"],
                                              timeout=10)
        welcome = json.loads(self.ws.recv())
        self.ws.send(json.dumps({"action": "subscribe", "series": [s["id"] for s in self.tenant["series"]]}))
        subscribed = json.loads(self.ws.recv())
        ok = welcome.get("type") == "welcome" and subscribed.get("type") == "subscribed"
        events.request.fire(request_type="WS", name="connect + subscribe",
                            response_time=(time.perf_counter() - started) * 1000, response_length=0,
                            exception=None if ok else RuntimeError(f"{welcome} {subscribed}"))
        self.last_seq = 0

    def on_stop(self):
        self.ws.close()

    @task
    def receive(self):
        try:
            event = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return
        except websocket.WebSocketConnectionClosedException as exc:
            events.request.fire(request_type="WS", name="closed", response_time=0, response_length=0, exception=exc)
            self.stop()
            return
        now_ms = time.time() * 1000
        kind = event.get("type")
        if kind in ("tick", "anomaly"):
            seq = event["seq"]
            gap = None if seq == self.last_seq + 1 or self.last_seq == 0 else RuntimeError(f"seq gap {self.last_seq}->{seq}")
            self.last_seq = seq
            if kind == "tick":
                latency = now_ms - max(row[0] for row in event["points"])
            else:
                latency = now_ms - datetime.fromisoformat(event["ts"]).timestamp() * 1000
            events.request.fire(request_type="WS", name=f"{kind} event (tick ts -> delivered)",
                                response_time=latency, response_length=0, exception=gap)


# --- raw samples for the report (tests/load/__main__.py computes the percentiles) ----------------

SAMPLES: list = []
MEASURING = {"since": None}


@events.spawning_complete.add_listener
def _spawned(user_count, **kwargs):
    MEASURING["since"] = time.time()


@events.request.add_listener
def _sample(request_type, name, response_time, exception, **kwargs):
    if MEASURING["since"] is not None:
        SAMPLES.append((time.time(), request_type, name, response_time, None if exception is None else str(exception)[:300]))


@events.quitting.add_listener
def _write(environment, **kwargs):
    with open(os.environ["LOAD_SAMPLES"], "w") as out:
        json.dump({"since": MEASURING["since"], "samples": SAMPLES}, out)
