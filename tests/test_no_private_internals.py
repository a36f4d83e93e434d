"""Our shipped modules stand on the public API of the libraries they use (issue 26): no module
imports another package's private name, reads a private attribute of a library object, or patches
a library module or class. A private internal changes without notice in a minor release (an
asgiref one once broke every HTTP request); a public one is deprecated first.

The scan reads the packages that ship (pyproject's package list; not tests, not migrations) and
reports every hit as (file, kind, name). A hit passes only if it is listed below: ALLOWED for an
exception that works around a named upstream issue, PENDING for code another branch of issue 26
is replacing. A listed entry that no longer occurs fails too, so the lists only ever shrink.

What counts, statically and without importing anything:
- `from pkg import _name`, or any import of a module path with a `_private` part, from a package
  not ours; plus a few undocumented internal modules of Django's (INTERNAL_MODULES);
- `obj._attr` (and getattr/setattr/hasattr with a literal "_attr") where no module of ours defines
  `_attr` (as a function, class, module name, or an attribute it assigns): the attribute can only be
  a library's. Documented underscore APIs (Model._meta, namedtuple's _asdict...) are PUBLIC_UNDERSCORE;
- assigning an attribute, or setattr(), onto a name imported from a package not ours (a module or
  a class): a monkey-patch."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
OURS = {re.sub(r"\*$", "", p) for p in tomllib.loads((REPO / "pyproject.toml").read_text())[
    "tool"]["setuptools"]["packages"]["find"]["include"]}

# Underscore names that are documented public API.
PUBLIC_UNDERSCORE = {
    "_meta",  # Django: the Model _meta API (docs/ref/models/meta)
    "_state",  # Django: Model._state.adding / .db (docs/ref/models/instances)
    "_default_manager", "_base_manager",  # Django: documented Model attributes
    "_asdict", "_replace", "_fields", "_make",  # collections.namedtuple
    "_exit",  # os._exit
    "_db",  # Django: Manager._db, used by the documented custom user manager (topics/auth/customizing)
    "_missing_", "_value_", "_name_", "_generate_next_value_",  # enum
}
# Internals whose names carry no underscore: modules, and imported or read names.
INTERNAL_MODULES = {
    "django.db.models.sql": "Django's query compiler (not in the reference docs)",
}
INTERNAL_NAMES = {
    "WsgiToAsgiInstance": "asgiref.wsgi's per-request helper behind the documented WsgiToAsgi",
    "dataBuffer": "Twisted FileDescriptor's write buffer",
}

# (file, kind, name): why it stays, with the upstream issue it works around. Keep it short.
ALLOWED: dict[tuple[str, str, str], str] = {
    # kombu's Redis Channel.close() reads the in-flight BRPOP reply unguarded (celery/kombu#1733), so
    # a worker exits when Redis drops (celery/kombu#582, #970); our Channel subclass reads it with
    # broker errors ignored. Proof: tests/reliability/test_worker_outlives_broker_restart.py.
    ("anomalyhub/celery.py", "private attribute", "_in_poll"): "celery/kombu#1733",
    ("anomalyhub/celery.py", "private attribute", "_brpop_read"): "celery/kombu#1733",
}

# Hits that other branches of issue 26 are removing; the merger empties this list as they land.
PENDING: dict[tuple[str, str, str], str] = {
}


def our_files() -> list[Path]:
    return sorted(p for pkg in OURS for p in (REPO / pkg).rglob("*.py")
                  if "migrations" not in p.parts and "__pycache__" not in p.parts)


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _library_private(name, ours: set[str]) -> bool:
    return isinstance(name, str) and (name in INTERNAL_NAMES or (
        _private(name) and name not in PUBLIC_UNDERSCORE and name not in ours))


def _foreign(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] not in OURS


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


def _dotted(node: ast.AST) -> str:
    return f"{_dotted(node.value)}.{node.attr}" if isinstance(node, ast.Attribute) else getattr(node, "id", "?")


def our_names(trees: dict[Path, ast.Module]) -> set[str]:
    """Every private name a module of ours defines: functions, classes, module or class names,
    attributes it assigns, parameters. An `x._name` with such a name may be ours."""
    names = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setattr" and len(node.args) > 1 \
                    and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)  # attributes set through a constructor: Foo(_x=...)
    return {n for n in names if isinstance(n, str) and _private(n)}


def _imported_foreign(tree: ast.Module) -> set[str]:
    """Names this module binds to a foreign module or to something imported from one."""
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names if _foreign(a.name)}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and _foreign(node.module):
            bound |= {a.asname or a.name for a in node.names}
    return bound


def scan(path: Path, tree: ast.Module, ours: set[str]) -> Iterator[tuple[str, str, str]]:
    rel = path.relative_to(REPO).as_posix()
    foreign_names = _imported_foreign(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _foreign(node.module):
            internal = any(_private(part) for part in node.module.split(".")) or any(
                node.module == m or node.module.startswith(m + ".") for m in INTERNAL_MODULES)
            for alias in node.names:
                if internal or _private(alias.name) or alias.name in INTERNAL_NAMES:
                    yield rel, "private import", f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _foreign(alias.name) and any(_private(part) for part in alias.name.split(".")):
                    yield rel, "private import", alias.name
        elif isinstance(node, ast.Attribute) and _library_private(node.attr, ours):
            yield rel, "private attribute", node.attr
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("getattr", "setattr", "hasattr", "delattr") \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) \
                and _library_private(node.args[1].value, ours):
            yield rel, "private attribute", node.args[1].value
        # Monkey-patches: `imported.attr = ...`, `imported.sub.attr = ...`, setattr(imported, ...).
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        for target in targets:
            if isinstance(target, ast.Attribute) and getattr(_root(target), "id", None) in foreign_names:
                yield rel, "monkey-patch", _dotted(target)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("setattr", "delattr") and node.args \
                and getattr(_root(node.args[0]), "id", None) in foreign_names:
            yield rel, "monkey-patch", f"{_dotted(node.args[0])}.{getattr(node.args[1], 'value', '?')}"


def all_hits() -> set[tuple[str, str, str]]:
    trees = {path: ast.parse(path.read_text(), str(path)) for path in our_files()}
    ours = our_names(trees)
    return {hit for path, tree in trees.items() for hit in scan(path, tree, ours)}


def test_no_module_of_ours_uses_a_librarys_private_internals():
    hits = all_hits()
    unlisted = sorted(hits - ALLOWED.keys() - PENDING.keys())
    assert not unlisted, "private internals of other packages (use their public API, or list the exception " \
        "in ALLOWED with the upstream issue it works around):\n" + "\n".join(map(str, unlisted))
    stale = sorted((ALLOWED.keys() | PENDING.keys()) - hits)
    assert not stale, "listed but gone: remove from ALLOWED/PENDING:\n" + "\n".join(map(str, stale))


@pytest.mark.parametrize("source, hit", [
    ("from channels_redis.utils import _consistent_hash", ("private import", "channels_redis.utils._consistent_hash")),
    ("from asgiref._private import Thing", ("private import", "asgiref._private.Thing")),
    ("import kombu._internal", ("private import", "kombu._internal")),
    ("def f(layer):\n    return layer._get_layer()", ("private attribute", "_get_layer")),
    ("def f(layer):\n    return getattr(layer, '_hosts')", ("private attribute", "_hosts")),
    ("from daphne import http_protocol\nhttp_protocol.WebRequest.__init__ = print",
     ("monkey-patch", "http_protocol.WebRequest.__init__")),
    ("from kombu.transport.redis import Channel\nsetattr(Channel, 'close', print)", ("monkey-patch", "Channel.close")),
    ("from django.db.models.sql import InsertQuery", ("private import", "django.db.models.sql.InsertQuery")),
])
def test_the_scan_finds_each_kind(source, hit):
    path = REPO / "anomalyhub" / "example.py"
    assert ("anomalyhub/example.py", *hit) in set(scan(path, ast.parse(source), set()))


@pytest.mark.parametrize("source", [
    "from channels.layers import get_channel_layer",
    "from .models import _helper",  # ours
    "from accounts.services import _RESOLVED",  # ours
    "def f(model):\n    return model._meta.pk",  # documented
    "class A:\n    def __init__(self):\n        self._x = 1\n    def f(self):\n        return self._x",
    "from django.conf import settings\ndef f(s):\n    s.FOO = 1",  # not an imported name
])
def test_the_scan_passes_public_and_own_names(source):
    tree = ast.parse(source)
    assert not set(scan(REPO / "anomalyhub" / "example.py", tree, our_names({Path("x"): tree})))
