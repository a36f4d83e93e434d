"""One human sentence per anomaly, the same in the UI, emails and webhooks:
"volume 251,288 is 14× the 15-minute median 17,950", "close 172.30 is above the expected range
170.10–171.90 (isolation_forest, score 0.93)"."""

from __future__ import annotations

import re

from ..models import Anomaly

AGGREGATES = {"med": "median", "avg": "mean", "mean": "mean", "max": "maximum", "min": "minimum", "std": "standard "
              "deviation", "sum": "sum", "first": "first", "last": "last", "count": "count", "mad": "MAD"}
_AGG = re.compile(r"^(\w+)\((\w+)(?:,\s*([\d.]+))?\)$")


def number(value) -> str:
    """Thousands separators for large values, 2 decimals for prices, 4 significant digits for small."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.4g}"


def window_label(window_ms: int | None) -> str:
    if not window_ms:
        return ""
    seconds = window_ms / 1000
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}-{unit} "
    return f"{window_ms}-ms "


def _aggregate_name(label: str, window_ms: int | None) -> tuple[str, str] | None:
    """("15-minute median", column) for "med(volume)"; None for what is not an aggregate."""
    match = _AGG.match(label.replace(" ", ""))
    if not match:
        return None
    fn, column, q = match.groups()
    name = f"{float(q):g}th percentile" if fn == "percentile" and q else AGGREGATES.get(fn, fn)
    return f"{window_label(window_ms)}{name}", column


def _rule_sentence(anomaly: Anomaly) -> str:
    observed = {k: v for k, v in (anomaly.observed or {}).items() if isinstance(v, (int, float))}
    window = anomaly.rule.window_size if anomaly.rule_id and anomaly.rule else None
    for label, reference in observed.items():
        found = _aggregate_name(label, window)
        if found and found[1] in observed:
            name, column = found
            value = observed[column]
            if reference:
                ratio = value / reference
                how = f"{ratio:.1f}×" if abs(ratio) < 10 else f"{ratio:,.0f}×"
                return f"{column} {number(value)} is {how} the {name} {number(reference)}"
            return f"{column} {number(value)} against a {name} of {number(reference)}"
    if observed:
        values = ", ".join(f"{k} {number(v)}" for k, v in observed.items())
        return f"{values} met {anomaly.text}"
    return anomaly.text


def _detector_sentence(anomaly: Anomaly) -> str:
    expected = anomaly.expected or {}
    explanation = expected.get("explanation") or {}
    channel = explanation.get("channel") or "value"
    value = (anomaly.observed or {}).get("value")
    kind = anomaly.detector.kind if anomaly.detector_id and anomaly.detector else "detector"
    score = f"score {anomaly.score:.2f}" if anomaly.score is not None else ""
    lower, upper, centre = expected.get("lower"), expected.get("upper"), expected.get("value")
    column = "close" if channel == "value" and anomaly.series.kind == "bar" else channel
    if value is not None and lower is not None and upper is not None:
        side = "above" if value > upper else "below" if value < lower else "within"
        return (f"{column} {number(value)} is {side} the expected range {number(lower)}–{number(upper)}"
                f"{f' (expected {number(centre)})' if centre is not None else ''}; {kind}, {score}")
    subject = f"{column} {number(value)}" if value is not None and channel == "value" else channel
    return f"{subject} is unusual for {anomaly.series.symbol} ({kind}, {score})"


def explain(anomaly: Anomaly) -> str:
    """The sentence for an anomaly (its series, rule and detector are read: select_related them)."""
    if anomaly.source.startswith("detector:"):
        return _detector_sentence(anomaly)
    return _rule_sentence(anomaly)


def source_name(anomaly: Anomaly) -> str:
    """What fired, by name: "rule Block prints", "detector isolation_forest on SPY"."""
    if anomaly.rule_id and anomaly.rule:
        return f"rule {anomaly.rule.name}"
    if anomaly.detector_id and anomaly.detector:
        return f"detector {anomaly.detector.kind} on {anomaly.series.symbol}"
    return anomaly.source.replace(":", " ")
