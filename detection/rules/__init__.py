"""AnomalyHub's rule engine: DolphinDB's streaming Anomaly Detection Engine in numpy.

    plan = compile_rule("temp > 65; temp > percentile(temp, 75)", ["temp"], window_size=6, step=3)
    engine = RuleEngine(plan)
    outputs = engine.process({"time": times_ms, "temp": temps})   # -> list[Output]
    blob = engine.snapshot(); engine = RuleEngine.restore(plan, blob)

Semantics (seed 002), and the choices where DolphinDB's documentation leaves room:
- Row metrics run on every row; prev() is the previous row of the same key.
- Windows are [end - windowSize, end) with ends at origin + k*step; origin comes from the first
  record of any key (alignment tables in alignment.py) and all keys share it.
- agg_column metrics compare each row with the latest window that ended at or before it.
- agg_const metrics are computed for a key's window when that key's first row at or past the
  window end arrives, only if the key has rows in it; the output time is the window end.
- NULL is NaN; aggregates skip it and comparisons with it are false (DolphinDB instead treats
  NULL as the smallest value by default), so missing data alone never raises an anomaly.
- With aggregates, a row older than an earlier row of its key is dropped and counted.
- Output order: by the row that produced the output, then time, then metric index; the same for
  any split of the stream into batches.
"""

from .engine import RuleEngine
from .errors import RuleSyntaxError
from .output import Output
from .plan import RulePlan, compile_rule

__all__ = ["compile_rule", "RuleEngine", "RuleSyntaxError", "RulePlan", "Output"]
