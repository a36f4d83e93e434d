"""The streaming detection pipeline: new points of a series -> its rules -> anomalies, exactly once.

Per series, a cursor row (locked FOR UPDATE) serialises workers, so a series' engine state is
never interleaved, while different series run in parallel. Points are consumed in time order in
chunks of snapshot_interval() messages; each chunk commits its anomalies, every rule's engine
snapshot (with the last message id it includes) and the cursor in ONE transaction. A worker that
dies mid-chunk loses only that uncommitted chunk, and the next run resumes from the snapshot:
no gap, no duplicate. A pass (run_many) takes many series of one organization at once, one
transaction per chunk for all of them, with a number of statements that grows only with the
series' point reads.

Late points: the cursor is a time, but batches commit in any order (concurrent clients, retries,
backfills), so a batch can commit points at or before the time already streamed. Every batch's
transaction queues its span for detection (watchlists.pending), which orders by commit what the cursor
cannot; each chunk takes (deletes) the spans of its series right after locking their cursors,
before it reads a point, and a span starting at or before the cursor rewinds the series (rewind).
So every stored point is judged, with the state it would have had, and every anomaly is stored
once. A span taken whose points this chunk cannot see yet (its transaction committed between the
two statements) only makes a later chunk replay them again.

One module per step of a chunk:
- messages: message ids (ts_us * RANK_BITS + rank) and chunk bounds;
- claim: which series are behind (stale_series), and a chunk's cursors locked with its points,
  rules, states and late spans (claim);
- rewind: late points send a series back;
- engines: rules' engines (kept in the worker between chunks) and detectors' models;
- write: anomalies, states and cursors in the chunk's transaction;
- announce: after commit, detection.signals.anomalies_detected;
- run: the chunk loop (run_many, run_some, run_series).
"""

from .claim import rules_for, stale_series
from .engines import detector_anomalies, rule_anomalies
from .messages import RANK_BITS, message_ids, snapshot_interval, whole_timestamps
from .run import run_many, run_series, run_some
from .write import write_anomalies

__all__ = ["RANK_BITS", "detector_anomalies", "message_ids", "rule_anomalies", "rules_for", "run_many",
           "run_series", "run_some", "snapshot_interval", "stale_series", "whole_timestamps", "write_anomalies"]
