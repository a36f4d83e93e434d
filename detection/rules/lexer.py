"""Tokenizer for the metric language: numbers, names, 'strings', operators and punctuation."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .errors import RuleSyntaxError

# Longest operators first so `<=` wins over `<`.
_OPERATORS = ("<=", ">=", "==", "!=", "<>", "&&", "||", "<", ">", "+", "-", "*", "/", "!")
_PUNCT = {"(", ")", ",", ";", "[", "]"}
# Tempting but wrong spellings get a pointed message instead of "unexpected character".
_MISSPELT = {"=": "use '==' to compare", "&": "use '&&' or 'and'", "|": "use '||' or 'or'"}
_NUMBER = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # "num" | "name" | "str" | "op" | one of _PUNCT | "eof"
    text: str
    pos: int  # offset in the caller's text
    value: float | str | None = None


def tokenize(text: str, base: int = 0, metric_index: int | None = None) -> list[Token]:
    """Split `text` into tokens ending with an "eof" token; positions are offset by `base`."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
            continue
        pos = base + i
        if "0" <= ch <= "9" or (ch == "." and i + 1 < n and "0" <= text[i + 1] <= "9"):
            i = _number(text, i, pos, metric_index, tokens)
            continue
        m = _NAME.match(text, i)
        if m:
            tokens.append(Token("name", m.group(), pos))
            i = m.end()
            continue
        if ch in "'\"":
            end = text.find(ch, i + 1)
            if end < 0:
                raise RuleSyntaxError("unterminated string", pos, metric_index)
            tokens.append(Token("str", text[i:end + 1], pos, text[i + 1:end]))
            i = end + 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
        if op:
            tokens.append(Token("op", op, pos))
            i += len(op)
            continue
        if ch in _PUNCT:
            tokens.append(Token(ch, ch, pos))
            i += 1
            continue
        hint = _MISSPELT.get(ch)
        raise RuleSyntaxError(f"unexpected character {ch!r}" + (f"; {hint}" if hint else ""),
                              pos, metric_index)
    tokens.append(Token("eof", "", base + n))
    return tokens


def _number(text: str, i: int, pos: int, metric_index: int | None, out: list[Token]) -> int:
    m = _NUMBER.match(text, i)
    end = m.end()
    # "1.2.3", "12abc" and "1e" are one bad number, not two tokens that fail later and vaguely.
    if end < len(text) and (text[end].isalnum() or text[end] in "._"):
        j = end
        while j < len(text) and (text[j].isalnum() or text[j] in "._"):
            j += 1
        raise RuleSyntaxError(f"bad number {text[i:j]!r}", pos, metric_index)
    value = float(m.group())
    if not math.isfinite(value):
        raise RuleSyntaxError(f"number out of range {m.group()!r}", pos, metric_index)
    out.append(Token("num", m.group(), pos, value))
    return end
