"""Writes the reliability report at the end of a pytest session.

test-artifacts/reliability.md is written on every run that collected reliability tests;
docs/reliability.md only when the run executed every test under tests/reliability (no module left out,
nothing deselected by -m/-k), so a partial run never clobbers the committed figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from . import report

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

_state = {"deselected": 0, "collected": set()}


def _is_ours(path) -> bool:
    return HERE in Path(str(path)).resolve().parents


def pytest_deselected(items):
    _state["deselected"] += sum(1 for item in items if _is_ours(item.path))


def pytest_collection_finish(session):
    _state["collected"] = {Path(str(item.path)).resolve() for item in session.items if _is_ours(item.path)}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if _is_ours(item.path) and (rep.when == "call" or rep.outcome != "passed"):
        outcome = rep.outcome if rep.when == "call" else f"{rep.outcome} in {rep.when}"
        if rep.skipped:
            outcome = "skipped"
        report.set_outcome(item.nodeid, outcome)
    return rep


def _complete_run(session) -> bool:
    modules = {p.resolve() for p in HERE.glob("test_*.py")}
    return (
        not _state["deselected"]
        and modules <= _state["collected"]
        and not session.config.option.keyword
        and not session.config.option.collectonly  # collected, never run: no figures to write
        and not getattr(session.config.option, "lf", False)
        and not session.shouldstop
    )


def pytest_terminal_summary(terminalreporter):
    if report.rows():
        terminalreporter.write_sep("-", "reliability report (this run)")
        terminalreporter.write_line(report.render(command="this run"))


def pytest_sessionfinish(session, exitstatus):
    if not _state["collected"]:
        return
    command = "pytest " + " ".join(sys.argv[1:]) if sys.argv[1:] else "pytest"
    text = report.render(command="pytest tests/reliability" if _complete_run(session) else command)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "reliability.md").write_text(text)
    if _complete_run(session):
        (ROOT / "docs" / "reliability.md").write_text(text)
