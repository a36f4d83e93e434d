"""The one JSON reader for request bodies (DRF's parsers, /graphql/, the sign-in view).

Python's json module recurses once per nesting level: a body of 50,000 `[` raised RecursionError,
a 500. Here a body is refused, before anything recursive reads it, when it nests deeper than
JSON_MAX_DEPTH. orjson (its own fixed limit is 1,024 levels) reads it first; what orjson refuses
but the standard library accepts (integers beyond 64 bits) goes to json.loads, which by then can
only meet a body that is shallow enough.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
from django.conf import settings

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1


class JSONBodyError(ValueError):
    """The body is not JSON this service reads; str(exc) says why, for the client."""


def max_depth() -> int:
    return getattr(settings, "JSON_MAX_DEPTH", 64)


def loads(body: bytes | str, *, parse_constant=None):
    """The parsed body, or JSONBodyError naming the problem."""
    data = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else bytes(body)
    limit = max_depth()
    if _bracket_depth(data) > limit:
        # Brackets inside strings count above: only then is the exact depth worth the walk.
        _check_parsed_depth(data, limit)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        first_error = exc
    try:
        return json.loads(data, parse_constant=parse_constant)
    except (ValueError, RecursionError):
        raise JSONBodyError(f"The body is not valid JSON: {first_error}") from None


def _bracket_depth(data: bytes) -> int:
    """An upper bound of the nesting depth, from the brackets alone: bytes.translate keeps only
    them (C speed), numpy sums the rest. A body of 1,000 points: ~0.06 ms, a quarter of orjson's."""
    brackets = data.translate(None, _NOT_BRACKETS)
    if len(brackets) <= max_depth():
        return len(brackets)
    return int(np.cumsum(_STEP[np.frombuffer(brackets, dtype=np.uint8)], dtype=np.int32).max(initial=0))


def _check_parsed_depth(data: bytes, limit: int) -> None:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise JSONBodyError(f"The body is not valid JSON or nests deeper than {limit} levels: {exc}") from None
    if _depth(value, limit) > limit:
        raise JSONBodyError(f"The body nests deeper than {limit} levels of arrays and objects; flatten it.")


def _depth(value, limit: int) -> int:
    """Nesting depth of a parsed value, iteratively; stops counting past limit."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (list, dict)):
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
