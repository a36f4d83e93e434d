"""Coalesced per-series background work: a burst of small batches becomes one queued run.

Two shapes: per-series flags and spans (claim/release: rollups), and a pending set per
organization (add_pending/take_pending: detection, where one run over every pending series costs
the same handful of queries as a run over one).

A flag per (purpose, series) means "a run is queued". Only the batch that sets the flag queues a
task; the run clears the flag before it reads, so points stored while it runs queue the next
run instead of being missed. A span per series (earliest start, latest end) can ride along: the
run takes it atomically with clearing the flag, and covers everything stored since the last run.

With Redis (production: the cache's Redis) one call is ONE round trip for every series of a
batch: flags and spans are pipelined. Without it (embedded mode: one process, tasks run in
process) a dict under a lock does the same.
"""

from __future__ import annotations

import threading
import time

from django.core.cache import cache

FLAG_SECONDS = 300  # a lost task message frees its series after this; the sweeps cover the gap
SPAN_SECONDS = 7 * 24 * 3600


def _flag(purpose: str, series_id: int) -> str:
    return f"{purpose}:queued:{series_id}"


def _span(purpose: str, series_id: int) -> str:
    return f"{purpose}:span:{series_id}"


def _held(purpose: str, series_id: int) -> str:
    return f"{purpose}:held:{series_id}"


def _pending(purpose: str, organization_id: int) -> tuple[str, str]:
    return f"{purpose}:queued:org:{organization_id}", f"{purpose}:pending:{organization_id}"


def _redis():
    """The raw client behind Django's RedisCache, or None for other cache backends. Kept on the
    cache's client (one per thread): get_client() builds a new redis.Redis, response callbacks and
    all, on every call, and every ingest and detection pass comes here."""
    inner = getattr(cache, "_cache", None)
    if inner is None or not hasattr(inner, "get_client"):
        return None
    client = getattr(inner, "_coalesce_client", None)
    if client is None:
        client = inner._coalesce_client = inner.get_client(None, write=True)
    return client


def claim(purpose: str, series_ids: list[int], spans: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """Widens each series' pending span (if given), sets the queued flags, and returns the series
    whose flag was not set yet: queue one run for exactly those."""
    spans = spans or {}
    client = _redis()
    if client is None:
        return _LOCAL.claim(purpose, series_ids, spans)
    key = cache.make_and_validate_key
    keys = [key(_span(purpose, series_id)) for series_id in spans] + \
           [key(_flag(purpose, series_id)) for series_id in series_ids]
    bounds = [bound for lo_hi in spans.values() for bound in lo_hi]
    fresh = _script(client, "_coalesce_claim", _CLAIM_LUA)(keys=keys, args=[len(spans), SPAN_SECONDS, FLAG_SECONDS,
                                                                            *bounds])
    return [series_ids[i - 1] for i in fresh]


# claim() as one script: a pipeline of 4 commands per series cost ~2 ms of a 10-series ingest
# request's CPU in redis-py's packing and parsing. ZADD LT/GT keep the smaller start and the
# larger end (µs fit a double's 53 bits); returns the 1-based positions of the flags it set.
_CLAIM_LUA = """
local n = tonumber(ARGV[1])
for i = 1, n do
  redis.call('ZADD', KEYS[i], 'LT', ARGV[2 + 2 * i], 'lo')
  redis.call('ZADD', KEYS[i], 'GT', ARGV[3 + 2 * i], 'hi')
  redis.call('EXPIRE', KEYS[i], ARGV[2])
end
local fresh = {}
for i = n + 1, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[3]) then fresh[#fresh + 1] = i - n end
end
return fresh
"""


def _script(client, attribute: str, source: str):
    """A registered script, kept on the client (EVALSHA, loaded once)."""
    script = getattr(client, attribute, None)
    if script is None:
        script = client.register_script(source)
        setattr(client, attribute, script)
    return script


def release(purpose: str, series_ids: list[int], run: str = "") -> dict[int, tuple[int, int] | None]:
    """Clears the flags and takes the pending spans, atomically: {series id: (start, end) or None}.

    A run that names itself (`run`) holds what it took under its name until finish(): if its
    process dies first (SIGKILL, OOM), the next release of those series takes the dead run's spans
    too, so a crash mid-refresh loses nothing. (A span held by a run still alive is taken as well:
    refreshed twice, which is harmless.)"""
    client = _redis()
    if client is None:
        return _LOCAL.release(purpose, series_ids, run)
    key = cache.make_and_validate_key
    keys = [k for series_id in series_ids for k in (key(_flag(purpose, series_id)), key(_span(purpose, series_id)),
                                                    key(_held(purpose, series_id)))]
    taken = _script(client, "_coalesce_release", _RELEASE_LUA)(keys=keys, args=[run, SPAN_SECONDS])
    return {series_id: (int(span[0]), int(span[1])) if span else None
            for series_id, span in zip(series_ids, taken, strict=True)}


def finish(purpose: str, series_ids: list[int], run: str) -> None:
    """The run refreshed (or handed back) everything it took: it holds nothing any more."""
    client = _redis()
    if client is None:
        return _LOCAL.finish(purpose, series_ids, run)
    key = cache.make_and_validate_key
    pipe = client.pipeline(transaction=False)
    for series_id in series_ids:
        pipe.hdel(key(_held(purpose, series_id)), run)
    pipe.execute()


# release() as one script. Per series (flag, span, held): the pending span (ZSET lo/hi) merged with
# every span runs still hold (HASH run -> "lo:hi"), stored under this run's name if it has one.
# Bounds travel as the strings Redis stores (µs need 53 bits; Lua's tostring would round them).
_RELEASE_LUA = """
local out = {}
for i = 1, #KEYS, 3 do
  redis.call('DEL', KEYS[i])
  local lo, hi
  local function widen(a, b)
    if not lo or tonumber(a) < tonumber(lo) then lo = a end
    if not hi or tonumber(b) > tonumber(hi) then hi = b end
  end
  local z = redis.call('ZRANGE', KEYS[i + 1], 0, -1, 'WITHSCORES')
  local zlo, zhi
  for j = 1, #z, 2 do
    if z[j] == 'lo' then zlo = z[j + 1] elseif z[j] == 'hi' then zhi = z[j + 1] end
  end
  if zlo and zhi then widen(zlo, zhi) end
  local held = redis.call('HVALS', KEYS[i + 2])
  for j = 1, #held do
    local a, b = string.match(held[j], '^(.-):(.-)$')
    widen(a, b)
  end
  redis.call('DEL', KEYS[i + 1], KEYS[i + 2])
  if lo and ARGV[1] ~= '' then
    redis.call('HSET', KEYS[i + 2], ARGV[1], lo .. ':' .. hi)
    redis.call('EXPIRE', KEYS[i + 2], ARGV[2])
  end
  out[#out + 1] = lo and {lo, hi} or false
end
return out
"""


def add_pending(purpose: str, organization_id: int, series_ids: list[int]) -> bool:
    """Adds series to the organization's pending set; True when no run was queued for it (queue
    one). One run then takes every series pending at its start, however many batches added them."""
    client = _redis()
    flag, members = _pending(purpose, organization_id)
    if client is None:
        return _LOCAL.add_pending(flag, members, series_ids)
    key = cache.make_and_validate_key
    pipe = client.pipeline(transaction=False)
    pipe.sadd(key(members), *series_ids)
    pipe.expire(key(members), SPAN_SECONDS)
    pipe.set(key(flag), b"1", nx=True, ex=FLAG_SECONDS)
    return bool(pipe.execute()[-1])


def restore_pending(purpose: str, organization_id: int, series_ids: list[int]) -> None:
    """Puts series taken by a run that failed back into the pending set, without queueing a run:
    the next add_pending (a new batch) queues one that takes them too."""
    client = _redis()
    _, members = _pending(purpose, organization_id)
    if client is None:
        return _LOCAL.restore_pending(members, series_ids)
    key = cache.make_and_validate_key
    client.pipeline(transaction=False).sadd(key(members), *series_ids).expire(key(members), SPAN_SECONDS).execute()


def take_pending(purpose: str, organization_id: int) -> list[int]:
    """Clears the queued flag and takes the pending set, atomically."""
    client = _redis()
    flag, members = _pending(purpose, organization_id)
    if client is None:
        return _LOCAL.take_pending(flag, members)
    key = cache.make_and_validate_key
    pipe = client.pipeline(transaction=True)
    pipe.delete(key(flag))
    pipe.smembers(key(members))
    pipe.delete(key(members))
    return sorted(int(m) for m in pipe.execute()[1])


class _LocalStore:
    def __init__(self):
        self.lock = threading.Lock()
        self.flags: dict[str, float] = {}
        self.spans: dict[str, tuple[int, int]] = {}
        self.pending: dict[str, set[int]] = {}
        self.held: dict[str, dict[str, tuple[int, int]]] = {}

    def claim(self, purpose, series_ids, spans):
        fresh = []
        now = time.monotonic()
        with self.lock:
            for series_id, (lo, hi) in spans.items():
                name = _span(purpose, series_id)
                old = self.spans.get(name)
                self.spans[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))
            for series_id in series_ids:
                name = _flag(purpose, series_id)
                if self.flags.get(name, 0) < now:
                    self.flags[name] = now + FLAG_SECONDS
                    fresh.append(series_id)
        return fresh

    def add_pending(self, flag, members, series_ids):
        now = time.monotonic()
        with self.lock:
            self.pending.setdefault(members, set()).update(series_ids)
            if self.flags.get(flag, 0) < now:
                self.flags[flag] = now + FLAG_SECONDS
                return True
            return False

    def restore_pending(self, members, series_ids):
        with self.lock:
            self.pending.setdefault(members, set()).update(series_ids)

    def take_pending(self, flag, members):
        with self.lock:
            self.flags.pop(flag, None)
            return sorted(self.pending.pop(members, ()))

    def release(self, purpose, series_ids, run):
        out = {}
        with self.lock:
            for series_id in series_ids:
                self.flags.pop(_flag(purpose, series_id), None)
                spans = [self.spans.pop(_span(purpose, series_id), None),
                         *self.held.pop(_held(purpose, series_id), {}).values()]
                spans = [span for span in spans if span]
                out[series_id] = (min(lo for lo, _ in spans), max(hi for _, hi in spans)) if spans else None
                if out[series_id] and run:
                    self.held[_held(purpose, series_id)] = {run: out[series_id]}
        return out

    def finish(self, purpose, series_ids, run):
        with self.lock:
            for series_id in series_ids:
                self.held.get(_held(purpose, series_id), {}).pop(run, None)


_LOCAL = _LocalStore()
