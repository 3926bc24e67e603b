"""Shared pytest fixtures, and the rules that keep the suite from passing by not running.

Skips under CI
--------------
With ``CI`` set to ``true`` (or ``1``/``yes``), a run that skipped anything fails:
a missing gunicorn, uWSGI, Redis, Celery or libmagic is a broken CI environment,
not a pass. Two kinds of skip are declared, and only these are allowed:

* ``@pytest.mark.applies_when(condition, reason="...")``: the test does not
  apply to this cell of the matrix (a gevent or Python version it is not about).
  When ``condition`` is false the test is skipped with a reason starting with
  ``not applicable:``; such skips are listed but do not fail the run. Write the
  condition on versions, never on whether something is installed.
* ``xfail(strict=True)``: a known limitation, which fails the run once fixed.

Every other skip (``pytest.skip``, ``pytest.importorskip``, ``skipif``, a
module-level skip) is listed at the end of the run and turns its exit status
into a failure.

Canaries
--------
``@pytest.mark.canary`` marks tests that run no code of this project and
only watch an upstream bug or behaviour that the code or the README relies on
(gRPC's gevent mode hanging a forked child at exit, the stock processors'
fork message on old gevent). They do not gate: they are deselected unless the
marker expression names them, e.g. ``pytest -m canary`` or
``nox -s canaries``. When one fails, upstream changed: revisit what relies on it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.receiver import BlackHole, OtlpReceiver

#: The prefix of the reason of a skip declared with ``applies_when``.
NOT_APPLICABLE = "not applicable: "


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "applies_when(condition, reason): run only when condition is true; otherwise a declared "
        "'not applicable' skip, allowed under CI (see tests/conftest.py)",
    )
    config.addinivalue_line(
        "markers",
        "canary: watches an upstream behaviour and runs no project code; deselected unless -m names it",
    )


#: (node id, reason) of every skip that is neither ``applies_when`` nor an xfail.
UNDECLARED_SKIPS: list[tuple[str, str]] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in item.iter_markers("applies_when"):
            condition = mark.args[0] if mark.args else mark.kwargs["condition"]
            reason = mark.kwargs.get("reason") or (mark.args[1] if len(mark.args) > 1 else "")
            if not reason:
                raise pytest.UsageError(f"{item.nodeid}: applies_when needs a reason")
            if not condition:
                item.add_marker(pytest.mark.skip(reason=NOT_APPLICABLE + reason))
    if "canary" in (config.getoption("markexpr") or ""):
        return
    canaries = [item for item in items if item.get_closest_marker("canary")]
    if canaries:
        config.hook.pytest_deselected(items=canaries)
        items[:] = [item for item in items if not item.get_closest_marker("canary")]


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    return text.removeprefix("Skipped: ")


def _record_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if not reason.startswith(NOT_APPLICABLE):
        UNDECLARED_SKIPS.append((report.nodeid, reason))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record_skip(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if hasattr(session.config, "workerinput"):
        return  # an xdist worker: the controller sees every report and decides
    if _in_ci() and UNDECLARED_SKIPS and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if not UNDECLARED_SKIPS or hasattr(config, "workerinput"):
        return
    verdict = "these fail the run (CI is set)" if _in_ci() else "these would fail the run under CI=true"
    terminalreporter.section(f"undeclared skips: {verdict}", sep="=", red=_in_ci(), bold=True)
    for nodeid, reason in UNDECLARED_SKIPS:
        terminalreporter.line(f"SKIPPED {nodeid}: {reason}")


# --- OTLP receivers (tests/receiver.py) --------------------------------------
# ``otlp_receiver`` is one real OTLP/HTTP + OTLP/gRPC server for the session;
# ``receiver`` hands it to a test cleared and with its default behaviour.
# ``blackhole`` is a per-test TCP endpoint that accepts and never answers.


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture
def receiver(otlp_receiver: OtlpReceiver) -> OtlpReceiver:
    otlp_receiver.reset()
    return otlp_receiver


@pytest.fixture
def blackhole() -> Iterator[BlackHole]:
    with BlackHole() as hole:
        yield hole
