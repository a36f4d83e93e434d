"""Everything an engine remembers between batches, and its snapshot encoding (msgpack).

Arrays travel as raw little-endian bytes with their dtype; nothing is pickled, so a snapshot
from an untrusted store cannot execute code when restored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack
import numpy as np

from .grouping import NEVER, KeyRegistry

FORMAT = "anomalyhub.rules.snapshot/1"


@dataclass
class Counters:
    num_rows: int = 0  # rows processed (after dropping replays and late rows)
    num_late: int = 0  # rows dropped because they were older than their key's latest row
    num_replayed: int = 0  # rows skipped because their msg id was already processed
    num_outputs: int = 0
    last_msg_id: int = -1
    snapshot_msg_id: int = -1
    snapshot_time_ms: int | None = None


@dataclass
class EngineState:
    keys: KeyRegistry = field(default_factory=KeyRegistry)
    last_time: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    prev: dict[str, np.ndarray] = field(default_factory=dict)  # prev uid -> last value per key
    origin: int | None = None  # end of the first window
    # Buffered rows still inside an open or latest-closed window, sorted by (key, time).
    buf_time: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    buf_code: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    buf_cols: dict[str, np.ndarray] = field(default_factory=dict)  # aggregate input text -> values
    counters: Counters = field(default_factory=Counters)

    @classmethod
    def empty(cls, prev_uids, agg_inputs) -> EngineState:
        state = cls()
        state.prev = {uid: np.zeros(0) for uid in prev_uids}
        state.buf_cols = {name: np.zeros(0) for name in agg_inputs}
        return state

    def grow(self) -> None:
        """Make per-key arrays as long as the key registry."""
        n, have = len(self.keys), len(self.last_time)
        if n > have:
            self.last_time = np.concatenate((self.last_time, np.full(n - have, NEVER, dtype=np.int64)))
            for uid, values in self.prev.items():
                self.prev[uid] = np.concatenate((values, np.full(n - have, np.nan)))

    def memory_bytes(self) -> int:
        arrays = [self.last_time, self.buf_time, self.buf_code, *self.prev.values(), *self.buf_cols.values()]
        return sum(a.nbytes for a in arrays) + 64 * len(self.keys)

    def to_bytes(self, fingerprint: str, time_ms: int) -> bytes:
        c = self.counters
        return msgpack.packb({
            "format": FORMAT, "plan": fingerprint, "keys": self.keys.values, "origin": self.origin,
            "last_time": _pack(self.last_time), "prev": {k: _pack(v) for k, v in self.prev.items()},
            "buf_time": _pack(self.buf_time), "buf_code": _pack(self.buf_code),
            "buf_cols": {k: _pack(v) for k, v in self.buf_cols.items()},
            "counters": {"num_rows": c.num_rows, "num_late": c.num_late, "num_replayed": c.num_replayed,
                         "num_outputs": c.num_outputs, "last_msg_id": c.last_msg_id},
            "snapshot_time_ms": time_ms,
        })

    @classmethod
    def from_bytes(cls, data: bytes, fingerprint: str) -> EngineState:
        """Rebuild state; raises ValueError if the snapshot is not for this plan."""
        try:
            d = msgpack.unpackb(data, strict_map_key=False)
        except Exception as exc:  # msgpack raises several unrelated types on garbage
            raise ValueError(f"not a rules snapshot: {exc}") from exc
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ValueError("not a rules snapshot")
        if d["plan"] != fingerprint:
            raise ValueError("snapshot was taken for a different rule or configuration")
        state = cls(keys=KeyRegistry(d["keys"]), last_time=_unpack(d["last_time"]),
                    prev={k: _unpack(v) for k, v in d["prev"].items()}, origin=d["origin"],
                    buf_time=_unpack(d["buf_time"]), buf_code=_unpack(d["buf_code"]),
                    buf_cols={k: _unpack(v) for k, v in d["buf_cols"].items()},
                    counters=Counters(**d["counters"]))
        state.counters.snapshot_msg_id = state.counters.last_msg_id
        state.counters.snapshot_time_ms = d["snapshot_time_ms"]
        return state


def _pack(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.newbyteorder("<").str, "data": a.astype(a.dtype.newbyteorder("<")).tobytes()}


def _unpack(d: dict) -> np.ndarray:
    dtype = np.dtype(d["dtype"])
    if dtype.kind not in "if":
        raise ValueError("unexpected array type in snapshot")
    return np.frombuffer(d["data"], dtype=dtype).astype(dtype.newbyteorder("="))
