"""Syntax tree of one metric, and its canonical text (the anomalyString of an output row)."""

from __future__ import annotations

# Binding strength used both by the parser and by render() to decide where parentheses go.
PREC_OR, PREC_AND, PREC_NOT, PREC_CMP, PREC_ADD, PREC_MUL, PREC_NEG, PREC_ATOM = range(1, 9)
BINARY_PREC = {"or": PREC_OR, "and": PREC_AND,
               "<": PREC_CMP, "<=": PREC_CMP, ">": PREC_CMP, ">=": PREC_CMP, "==": PREC_CMP, "!=": PREC_CMP,
               "+": PREC_ADD, "-": PREC_ADD, "*": PREC_MUL, "/": PREC_MUL}


class Node:
    """Base of every tree node. `pos` is where the node starts in the caller's text;
    `parens` records parentheses the user wrote, which render() keeps."""

    __slots__ = ("pos", "parens")
    prec = PREC_ATOM

    def __init__(self, pos: int):
        self.pos = pos
        self.parens = False

    def children(self) -> tuple[Node, ...]:
        return ()


class Num(Node):
    __slots__ = ("value", "text")

    def __init__(self, pos: int, value: float, text: str):
        super().__init__(pos)
        self.value, self.text = value, text


class Bool(Node):
    __slots__ = ("value",)

    def __init__(self, pos: int, value: bool):
        super().__init__(pos)
        self.value = value


class Str(Node):
    __slots__ = ("value", "text")

    def __init__(self, pos: int, value: str, text: str):
        super().__init__(pos)
        self.value, self.text = value, text


class Col(Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str):
        super().__init__(pos)
        self.name = name


class Unary(Node):
    """`op` is "neg" or "not"; `spelling` keeps what the user typed ("-", "not", "!")."""

    __slots__ = ("op", "operand", "spelling")

    def __init__(self, pos: int, op: str, operand: Node, spelling: str):
        super().__init__(pos)
        self.op, self.operand, self.spelling = op, operand, spelling

    @property
    def prec(self) -> int:
        return PREC_NEG if self.op == "neg" else PREC_NOT

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


class Binary(Node):
    """`op` is canonical ("and", "!=", ...); `spelling` keeps "&&", "<>" and the like."""

    __slots__ = ("op", "left", "right", "spelling")

    def __init__(self, pos: int, op: str, left: Node, right: Node, spelling: str):
        super().__init__(pos)
        self.op, self.left, self.right, self.spelling = op, left, right, spelling

    @property
    def prec(self) -> int:
        return BINARY_PREC[self.op]

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


class Call(Node):
    """A function call. `uid` names prev/aggregate calls whose values the engine keeps."""

    __slots__ = ("name", "args", "uid")

    def __init__(self, pos: int, name: str, args: list[Node]):
        super().__init__(pos)
        self.name, self.args, self.uid = name, args, None

    def children(self) -> tuple[Node, ...]:
        return tuple(self.args)


def walk(node: Node):
    """Yield `node` and its descendants, parents before children."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children()))


def render(node: Node) -> str:
    """Canonical text: single spaces around binary operators, ", " between arguments, and
    parentheses only where the user wrote them or precedence needs them."""
    text = _render_bare(node)
    return f"({text})" if node.parens else text


def _render_bare(node: Node) -> str:
    if isinstance(node, Num | Str):
        return node.text
    if isinstance(node, Bool):
        return "true" if node.value else "false"
    if isinstance(node, Col):
        return node.name
    if isinstance(node, Call):
        return f"{node.name}({', '.join(render(a) for a in node.args)})"
    if isinstance(node, Unary):
        sep = " " if node.spelling.isalpha() else ""
        return f"{node.spelling}{sep}{_operand(node.operand, node.prec)}"
    left = _operand(node.left, node.prec)
    # Right operands of the same strength need parentheses: a - (b - c), and comparisons
    # never chain.
    right = _operand(node.right, node.prec + 1)
    return f"{left} {node.spelling} {right}"


def _operand(node: Node, need: int) -> str:
    text = render(node)
    return text if node.parens or node.prec >= need else f"({text})"
