"""Recursive-descent parser: metric text -> syntax trees (see nodes.py). Never evaluates text.

Grammar, loosest binding first:
    metric  := or
    or      := and (("or" | "||") and)*
    and     := not (("and" | "&&") not)*
    not     := ("not" | "!") not | cmp
    cmp     := add [("<" | "<=" | ">" | ">=" | "==" | "!=" | "<>") add]   -- no chaining
    add     := mul (("+" | "-") mul)*
    mul     := unary (("*" | "/") unary)*
    unary   := ("-" | "+") unary | atom
    atom    := number | "true" | "false" | 'string' | name "(" [metric ("," metric)*] ")"
             | name | "(" metric ")"
`!` binds as loosely as `not` (so `!x > 1` means `!(x > 1)`), which is what rule authors mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import RuleSyntaxError
from .lexer import Token, tokenize
from .nodes import Binary, Bool, Call, Col, Node, Num, Str, Unary

MAX_METRIC_CHARS = 2000
MAX_METRICS = 64
MAX_DEPTH = 32  # explicit nesting: parentheses, calls, unary operators
MAX_TREE_HEIGHT = 128  # also bounds long operator chains, so later recursion stays shallow

_KEYWORDS = {"and", "or", "not", "true", "false"}
_OR, _AND = {"or": "or", "||": "or"}, {"and": "and", "&&": "and"}
_ADD, _MUL = {"+": "+", "-": "-"}, {"*": "*", "/": "/"}
_CMP = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!=", "<>": "!="}


@dataclass(frozen=True)
class ParsedMetric:
    index: int
    tree: Node
    source: str  # the metric's own text as written
    start: int  # where that text starts in the caller's text


def parse_metrics(metrics: str | list[str] | tuple[str, ...]) -> list[ParsedMetric]:
    """Parse one `;`-separated string (or DolphinDB metacode `<[a, b]>`), or a list of strings
    with one metric each, into trees. Raises RuleSyntaxError."""
    if isinstance(metrics, str):
        pieces = _split(metrics)
    else:
        metrics = list(metrics)
        if not all(isinstance(m, str) for m in metrics):
            raise RuleSyntaxError("metrics must be strings")
        pieces = [(m, _tokens_of(m, i), 0) for i, m in enumerate(metrics[:MAX_METRICS + 1])]
    if not pieces:
        raise RuleSyntaxError("no metrics given")
    if len(pieces) > MAX_METRICS:
        raise RuleSyntaxError(f"too many metrics (at most {MAX_METRICS})", None, MAX_METRICS)
    out = []
    for index, (text, tokens, empty_pos) in enumerate(pieces):
        if not tokens:
            raise RuleSyntaxError("empty metric", empty_pos, index)
        end = tokens[-1].pos + len(tokens[-1].text)
        if end - tokens[0].pos > MAX_METRIC_CHARS:
            raise RuleSyntaxError(f"metric longer than {MAX_METRIC_CHARS} characters", tokens[0].pos, index)
        tree = _Parser(tokens, index, end).parse()
        if _height(tree) > MAX_TREE_HEIGHT:
            raise RuleSyntaxError(f"expression too long: more than {MAX_TREE_HEIGHT} nested operations",
                                  tokens[0].pos, index)
        out.append(ParsedMetric(index, tree, text[tokens[0].pos:end], tokens[0].pos))
    return out


def _height(tree: Node) -> int:
    best, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        best = max(best, depth)
        stack.extend((c, depth + 1) for c in node.children())
    return best


def _tokens_of(text: str, index: int) -> list[Token]:
    if len(text) > MAX_METRIC_CHARS:
        raise RuleSyntaxError(f"metric longer than {MAX_METRIC_CHARS} characters", MAX_METRIC_CHARS, index)
    return tokenize(text, 0, index)[:-1]


def _split(text: str) -> list[tuple[str, list[Token], int]]:
    """Split one string into (text, tokens, position) metrics at top-level `;`, or at
    top-level `,` inside metacode brackets `<[...]>`."""
    if len(text) > MAX_METRIC_CHARS * MAX_METRICS:
        raise RuleSyntaxError("metrics text too long", MAX_METRIC_CHARS * MAX_METRICS, None)
    try:
        tokens = tokenize(text)[:-1]
    except RuleSyntaxError as exc:
        # The tokenizer sees the whole text; name the metric the bad character is in.
        exc.metric_index = text[:exc.position].count(";")
        raise RuleSyntaxError(exc.message, exc.position, exc.metric_index) from None
    separator = ";"
    if len(tokens) > 1 and tokens[0].text == "<" and tokens[-1].text == ">":
        # Metacode <metric> or <[metric, metric]>: a metric can neither start with '<' nor
        # end with '>', so stripping them is unambiguous.
        tokens = tokens[1:-1]
        if len(tokens) > 1 and tokens[0].kind == "[" and tokens[-1].kind == "]":
            tokens, separator = tokens[1:-1], ","
    groups: list[tuple[list[Token], int]] = [([], tokens[0].pos if tokens else len(text))]
    depth = 0
    for tok in tokens:
        depth += {"(": 1, ")": -1}.get(tok.kind, 0)
        if tok.kind == separator and depth == 0:
            groups.append(([], tok.pos + 1))
        else:
            groups[-1][0].append(tok)
    if len(groups) > 1 and not groups[-1][0]:
        groups.pop()  # one trailing separator is harmless
    return [(text, group, pos) for group, pos in groups]


class _Parser:
    def __init__(self, tokens: list[Token], index: int, end: int):
        self.tokens = tokens + [Token("eof", "", end)]
        self.i = 0
        self.index = index
        self.depth = 0

    # -- helpers -----------------------------------------------------------------------
    def error(self, message: str, tok: Token | None = None) -> RuleSyntaxError:
        tok = tok or self.peek()
        return RuleSyntaxError(message, tok.pos, self.index)

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def word(self) -> str | None:
        """The current token as a lower-case keyword, or None."""
        tok = self.peek()
        if tok.kind == "name" and tok.text.lower() in _KEYWORDS:
            return tok.text.lower()
        return None

    def nest(self, tok: Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested deeper than {MAX_DEPTH} levels", tok)

    # -- grammar -----------------------------------------------------------------------
    def parse(self) -> Node:
        node = self.expr()
        tok = self.peek()
        if tok.kind != "eof":
            raise self.error(_unexpected(tok) if tok.kind != ")" else "unbalanced ')'", tok)
        return node

    def expr(self) -> Node:
        return self.chain(_OR, self.and_expr)

    def and_expr(self) -> Node:
        return self.chain(_AND, self.not_expr)

    def chain(self, operators: dict[str, str], operand) -> Node:
        """Left-associative run of `operand`s joined by `operators` (spelling -> canonical op)."""
        left = operand()
        while (op := self.operator(operators)) is not None:
            tok = self.next()
            spelling = tok.text.lower() if tok.kind == "name" else tok.text
            left = Binary(left.pos, op, left, operand(), spelling)
        return left

    def operator(self, operators: dict[str, str]) -> str | None:
        tok = self.peek()
        if tok.kind == "op":
            return operators.get(tok.text)
        return operators.get(tok.text.lower()) if tok.kind == "name" else None

    def not_expr(self) -> Node:
        tok = self.peek()
        if self.word() == "not" or (tok.kind == "op" and tok.text == "!"):
            self.next()
            self.nest(tok)
            operand = self.not_expr()
            self.depth -= 1
            return Unary(tok.pos, "not", operand, "not" if tok.kind == "name" else "!")
        return self.comparison()

    def comparison(self) -> Node:
        left = self.additive()
        op = self.operator(_CMP)
        if op is None:
            return left
        tok = self.next()
        node = Binary(left.pos, op, left, self.additive(), tok.text)
        if self.operator(_CMP) is not None:
            raise self.error("comparisons cannot be chained; join them with 'and'")
        return node

    def additive(self) -> Node:
        return self.chain(_ADD, self.multiplicative)

    def multiplicative(self) -> Node:
        return self.chain(_MUL, self.unary)

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text in "+-":
            self.next()
            self.nest(tok)
            operand = self.unary()
            self.depth -= 1
            return operand if tok.text == "+" else Unary(tok.pos, "neg", operand, "-")
        return self.atom()

    def atom(self) -> Node:
        tok = self.next()
        if tok.kind == "num":
            return Num(tok.pos, tok.value, tok.text)
        if tok.kind == "str":
            return Str(tok.pos, tok.value, tok.text)
        if tok.kind == "(":
            self.nest(tok)
            node = self.expr()
            if self.peek().kind != ")":
                raise self.error("unbalanced '(': expected ')'" if self.peek().kind == "eof"
                                 else _unexpected(self.peek()) + ", expected ')'")
            self.next()
            self.depth -= 1
            node.parens = True
            return node
        if tok.kind == "name":
            lower = tok.text.lower()
            if lower in ("true", "false"):
                return Bool(tok.pos, lower == "true")
            if lower in _KEYWORDS:
                raise self.error(f"'{tok.text}' needs an operand before it", tok)
            if self.peek().kind == "(":
                return self.call(tok)
            return Col(tok.pos, tok.text)
        if tok.kind == "eof":
            raise self.error("unexpected end of metric: an operand is missing", tok)
        raise self.error(_unexpected(tok), tok)

    def call(self, name: Token) -> Node:
        self.nest(self.next())
        args: list[Node] = []
        if self.peek().kind != ")":
            args.append(self.expr())
            while self.peek().kind == ",":
                self.next()
                args.append(self.expr())
        if self.peek().kind != ")":
            raise self.error("unbalanced '(' in call: expected ')'" if self.peek().kind == "eof"
                             else _unexpected(self.peek()) + f" in call to {name.text}()")
        self.next()
        self.depth -= 1
        return Call(name.pos, name.text, args)


def _unexpected(tok: Token) -> str:
    if tok.kind == "eof":
        return "unexpected end of metric"
    return f"unexpected {tok.text!r}"
