"""uWSGI's gevent loop, started the way users start it.

``uwsgi --gevent 100 --master --enable-threads`` with 2 workers serves the
Flask app of ``tests/apps`` under ``opentelemetry-instrument`` or with the
distro's sitecustomize folder on ``PYTHONPATH`` (the options in a
``uwsgi.ini``, as deployments keep them; also with ``lazy-apps``). uWSGI forks its workers from
C (no Python at-fork hooks run) and, in gevent mode, skips Python's
``atexit``: the distro's uWSGI hooks (:mod:`otel_gevent_distro.startup.uwsgi_hooks`)
must make every request's telemetry arrive anyway. After N requests and a
SIGTERM, the receiver must hold exactly N front -> client -> back traces, and
uWSGI's output must be free of tracebacks.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.launch import BIN
from tests.receiver import OtlpReceiver
from tests.servers import (
    APPS,
    LOCALHOST,
    SERVER_DURATION,
    ServerProcess,
    assert_front_back_traces,
    assert_no_noise,
    assert_notes_written_by_workers,
    free_port,
    launch_command,
    report,
    serve_requests,
)

UWSGI = BIN / "uwsgi"
if not UWSGI.is_file():
    pytest.skip("uWSGI is not installed in this environment (pip install uwsgi)", allow_module_level=True)
pytest.importorskip("flask", reason="flask is not installed")
pytest.importorskip(
    "opentelemetry.instrumentation.flask", reason="opentelemetry-instrumentation-flask is not installed"
)

REQUESTS = 20
PATHS = ("instrument", "sitecustomize")

#: What a user's uwsgi.ini for a gevent app says (SIGTERM stops uWSGI 2.0 only with die-on-term).
INI = """\
[uwsgi]
http-socket = {address}
master = true
processes = 2
gevent = 100
enable-threads = true
die-on-term = true
need-app = true
disable-logging = true
pythonpath = {apps}
module = flask_app:app
home = {home}
"""


def native_threads(pid: int) -> list[str]:
    """The names of the OS threads process ``pid`` runs (Linux)."""
    return [Path(f"/proc/{pid}/task/{task}/comm").read_text().strip() for task in os.listdir(f"/proc/{pid}/task")]


def _env(receiver: OtlpReceiver) -> dict[str, str]:
    return {
        **receiver.env("http/protobuf"),
        "OTEL_PYTHON_FLASK_EXCLUDED_URLS": "healthz",
        "OTEL_LOGS_EXPORTER": "none",
        # Metrics on: the workers' flush at exit must deliver them, quietly.
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
    }


@pytest.mark.parametrize(
    ("via", "lazy_apps"),
    [("instrument", False), ("sitecustomize", False), ("sitecustomize", True)],
    ids=["instrument", "sitecustomize", "sitecustomize-lazy-apps"],
)
def test_uwsgi_gevent_workers_export_every_request(
    tmp_path: Path, receiver: OtlpReceiver, via: str, lazy_apps: bool
) -> None:
    address = f"{LOCALHOST}:{free_port()}"
    ini = tmp_path / "uwsgi.ini"
    ini.write_text(
        INI.format(address=address, apps=APPS, home=BIN.parent) + ("lazy-apps = true\n" if lazy_apps else "")
    )
    env = {**_env(receiver), "APP_NOTES": str(tmp_path / "notes.txt")}
    command, env = launch_command([str(UWSGI), "--ini", str(ini)], via, env)
    with ServerProcess("uwsgi", command, env, tmp_path, tmp_path / "uwsgi.log") as server:
        server.wait_for_http(f"http://{address}/healthz", timeout=30)
        master_threads = native_threads(server.pid)
        answers = serve_requests(server, f"http://{address}", REQUESTS)
        worker_threads = {pid: native_threads(pid) for pid in {a["pid"] for a in answers}}
        server.stop(signal.SIGTERM)
        output = server.output()
    assert_no_noise("uwsgi", output)
    # uWSGI forks from C: a thread alive in the master at that moment can hold the GIL or a
    # runtime lock, and the worker it forks then hangs for good. The distro starts none there.
    assert len(master_threads) == 1, f"the uWSGI master runs native threads {master_threads}"
    # ... and starts them in each worker after the fork: gevent's monitor thread at least.
    assert all(len(threads) > 1 for threads in worker_threads.values()), worker_threads
    assert_notes_written_by_workers(tmp_path / "notes.txt", answers, REQUESTS)
    assert "goodbye to uWSGI" in output, output
    spans = receiver.wait_for(3 * REQUESTS, timeout=30)
    found = assert_front_back_traces(spans, REQUESTS)
    # The export interval is a minute: only the workers' flush at exit can deliver these. (uWSGI
    # forks in C, so the SDK's per-process resource is the master's in every worker: no per-worker count.)
    assert receiver.wait_for(lambda m: m.name in SERVER_DURATION, signal="metrics", timeout=30)
    report(
        "uwsgi --gevent 100 --master" + (" --lazy-apps" if lazy_apps else ""),
        via,
        workers_serving=len({a["pid"] for a in answers}),
        **found.counts(),
    )


@pytest.mark.xfail(
    strict=True,
    reason="opentelemetry-instrument's parser takes uWSGI's --gevent for an abbreviation of the distro's "
    "--gevent_* flags (generated from OTEL_PYTHON_GEVENT_*) and stops with 'ambiguous option'",
)
def test_uwsgi_gevent_option_passes_through_opentelemetry_instrument() -> None:
    command, env = launch_command([str(UWSGI), "--gevent", "2", "--version"], "instrument")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "ambiguous option" not in done.stderr, done.stderr


# --- the hooks themselves, with a stand-in for uWSGI's embedded module ----------------------


def _fake_uwsgi(master_pid: int) -> types.ModuleType:
    module = types.ModuleType("uwsgi")
    module.masterpid = lambda: master_pid  # type: ignore[attr-defined]
    return module


@pytest.fixture
def fresh_hooks(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    from otel_gevent_distro.startup import uwsgi_hooks

    monkeypatch.setattr(uwsgi_hooks, "_installed_in_pid", None)
    sys.modules.pop("uwsgidecorators", None)
    yield uwsgi_hooks
    sys.modules.pop("uwsgidecorators", None)  # it captured the stand-in module


@pytest.fixture
def in_uwsgi(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """The registry of work waiting for the fork, empty, in a process taken for uWSGI's."""
    from otel_gevent_distro.runtime import server_fork

    monkeypatch.setattr(server_fork, "_after_fork_actions", [])
    monkeypatch.setattr(server_fork, "_post_fork_ran_in_pid", None)
    monkeypatch.setattr(server_fork, "started_by_uwsgi", lambda: True)
    return server_fork


def test_outside_uwsgi_nothing_is_installed(fresh_hooks: types.ModuleType) -> None:
    finders = list(sys.meta_path)
    assert fresh_hooks.install_server_hooks() is False
    assert sys.meta_path == finders


def test_without_a_master_the_hooks_wrap_the_existing_ones(
    fresh_hooks: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    uwsgi = _fake_uwsgi(master_pid=0)
    uwsgi.post_fork_hook = lambda: calls.append("user post_fork")  # type: ignore[attr-defined]
    uwsgi.atexit = lambda: calls.append("user atexit")  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
    monkeypatch.setattr(fresh_hooks, "_after_fork", lambda: calls.append("distro after fork"))
    monkeypatch.setattr(fresh_hooks, "flush_providers", lambda: calls.append("distro flush"))

    assert fresh_hooks.install_server_hooks() is True
    uwsgi.post_fork_hook()  # type: ignore[attr-defined]
    monkeypatch.setattr(fresh_hooks, "_installed_in_pid", -1)  # as seen from a forked worker
    uwsgi.post_fork_hook()  # type: ignore[attr-defined]
    uwsgi.atexit()  # type: ignore[attr-defined]
    assert calls == ["user post_fork", "distro after fork", "user post_fork", "distro flush", "user atexit"]


def test_with_a_master_the_post_fork_hook_leads_the_uwsgidecorators_chain(
    fresh_hooks: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("uwsgidecorators") is None:
        pytest.skip("uwsgidecorators is not installed")
    monkeypatch.setitem(sys.modules, "uwsgi", _fake_uwsgi(master_pid=os.getpid()))
    assert fresh_hooks.install_server_hooks() is True
    import uwsgidecorators

    @uwsgidecorators.postfork
    def users_hook() -> None:  # a user's module imported after the distro started
        pass

    assert uwsgidecorators.postfork_chain[0] is fresh_hooks.after_uwsgi_fork
    assert sys.modules["uwsgi"].post_fork_hook is uwsgidecorators.postfork_chain_hook


def test_outside_uwsgi_work_after_the_fork_runs_at_once() -> None:
    from otel_gevent_distro.runtime.server_fork import after_server_fork

    calls: list[str] = []
    assert after_server_fork(lambda: calls.append("ran")) is True
    assert calls == ["ran"]


def test_in_a_uwsgi_master_work_waits_for_each_worker_once(
    fresh_hooks: types.ModuleType,
    in_uwsgi: types.ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def start() -> None:
        calls.append(f"start in {os.getpid()}")

    def broken() -> None:
        raise RuntimeError("no thread for you")

    monkeypatch.setattr(fresh_hooks, "_after_fork", in_uwsgi.run_after_fork_actions)
    uwsgi = _fake_uwsgi(master_pid=os.getpid())
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)

    assert in_uwsgi.after_server_fork(start) is False
    assert in_uwsgi.after_server_fork(start) is False  # kept once
    assert in_uwsgi.after_server_fork(broken) is False
    assert calls == []  # nothing runs in the master

    assert fresh_hooks.install_server_hooks() is True
    monkeypatch.setattr(fresh_hooks, "_installed_in_pid", -1)  # as seen from a forked worker
    uwsgi.post_fork_hook()  # type: ignore[attr-defined]
    uwsgi.post_fork_hook()  # a second call in the same worker does nothing more
    assert calls == [f"start in {os.getpid()}"]
    assert [r.getMessage() for r in caplog.records if "after the server's fork" in r.getMessage()] == [
        "otel-gevent-distro: broken failed after the server's fork (RuntimeError: no thread for you)."
    ]
    assert in_uwsgi.after_server_fork(start) is True  # in a worker: at once
    assert len(calls) == 2


def test_without_a_master_the_original_worker_runs_the_waiting_work(
    fresh_hooks: types.ModuleType, in_uwsgi: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    uwsgi = _fake_uwsgi(master_pid=0)
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
    assert in_uwsgi.after_server_fork(lambda: calls.append("ran")) is False
    assert fresh_hooks.install_server_hooks() is True
    uwsgi.post_fork_hook()  # type: ignore[attr-defined]  # uWSGI calls it in worker 1, the original process
    assert calls == ["ran"]
