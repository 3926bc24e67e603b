"""gunicorn's gevent worker, started the way users start it.

``gunicorn -k gevent -w 2`` serves the Flask app of ``tests/apps`` under
``opentelemetry-instrument`` or with the distro's sitecustomize folder on
``PYTHONPATH``, with and without ``--preload``, and with a user's
``gunicorn.conf.py`` that has its own ``post_fork``. After N requests and a
SIGTERM, the receiver must hold exactly N front -> client -> back traces, and
the server's output must be free of tracebacks.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.launch import BIN
from tests.receiver import OtlpReceiver
from tests.servers import (
    APPS,
    ServerProcess,
    assert_front_back_traces,
    assert_no_noise,
    assert_notes_written_by_workers,
    launch_command,
    report,
    requests_counted,
    requests_served,
    serve_requests,
)

pytest.importorskip("gunicorn", reason="gunicorn is not installed")
pytest.importorskip("flask", reason="flask is not installed")
pytest.importorskip(
    "opentelemetry.instrumentation.flask", reason="opentelemetry-instrumentation-flask is not installed"
)
pytest.importorskip(
    "opentelemetry.instrumentation.requests", reason="opentelemetry-instrumentation-requests is not installed"
)

try:
    import gunicorn.workers.ggevent  # noqa: F401 - refuses a gevent it does not support
except RuntimeError as exc:
    pytest.skip(
        f"this gunicorn's gevent worker cannot run here: {exc} (gunicorn<24 supports older gevent)",
        allow_module_level=True,
    )

REQUESTS = 20
PATHS = ("instrument", "sitecustomize")


def _no_control_socket() -> list[str]:
    """gunicorn >= 25 opens a control socket in a fixed place; parallel runs would share it."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def _gunicorn(tmp_path: Path, receiver: OtlpReceiver, via: str, options: list[str]) -> ServerProcess:
    command = [str(BIN / "gunicorn"), *options, *_no_control_socket(), "flask_app:app"]
    env = {
        **receiver.env("http/protobuf"),
        "APP_NOTES": str(tmp_path / "notes.txt"),
        "OTEL_PYTHON_FLASK_EXCLUDED_URLS": "healthz",
        "OTEL_LOGS_EXPORTER": "none",
        # Metrics on, exported once per worker, at exit: every worker's last metrics must arrive.
        "OTEL_METRIC_EXPORT_INTERVAL": "60000",
    }
    full_command, full_env = launch_command(command, via, env)
    return ServerProcess("gunicorn", full_command, full_env, APPS, tmp_path / "gunicorn.log")


def _serve_and_stop(tmp_path: Path, server: ServerProcess) -> tuple[str, list[dict[str, int]]]:
    """Wait for the listener, send the requests, SIGTERM the arbiter; (output, answers)."""
    address = server.wait_for_output(r"Listening at: (http://[\d.]+:\d+)", timeout=30).group(1)
    server.wait_for_http(f"{address}/healthz", timeout=30)
    answers = serve_requests(server, address, REQUESTS)
    assert server.stop(signal.SIGTERM) == 0, server.output()
    output = server.output()
    assert_no_noise("gunicorn", output)
    assert_notes_written_by_workers(tmp_path / "notes.txt", answers, REQUESTS)
    return output, answers


@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-load", "preload"])
@pytest.mark.parametrize("via", PATHS)
def test_gunicorn_gevent_worker_exports_every_request(
    tmp_path: Path, receiver: OtlpReceiver, via: str, preload: bool
) -> None:
    options = ["-k", "gevent", "-w", "2", "-b", "127.0.0.1:0", "--graceful-timeout", "10"]
    options += ["--preload"] if preload else []
    with _gunicorn(tmp_path, receiver, via, options) as server:
        _, answers = _serve_and_stop(tmp_path, server)
    spans = receiver.wait_for(3 * REQUESTS, timeout=30)
    found = assert_front_back_traces(spans, REQUESTS)
    # The export interval is a minute: only each worker's export at exit can deliver these.
    assert requests_counted(receiver) == requests_served(answers)
    pids = {a["pid"] for a in answers}
    report("gunicorn" + (" --preload" if preload else ""), via, workers_serving=len(pids), **found.counts())


@pytest.mark.parametrize("via", PATHS)
def test_gunicorn_with_users_config_and_post_fork(tmp_path: Path, receiver: OtlpReceiver, via: str) -> None:
    with _gunicorn(tmp_path, receiver, via, ["-c", str(APPS / "gunicorn_user_conf.py")]) as server:
        output, answers = _serve_and_stop(tmp_path, server)
    pids = {a["pid"] for a in answers}
    assert output.count("user post_fork ran in worker") == 2, output
    spans = receiver.wait_for(3 * REQUESTS + 2, timeout=30)
    hooks = [s for s in spans if s.name == "user-post-fork"]
    assert len(hooks) == 2, [s.name for s in spans]
    found = assert_front_back_traces([s for s in spans if s.name != "user-post-fork"], REQUESTS)
    report("gunicorn -c conf(post_fork)", via, workers_serving=len(pids), post_fork_spans=len(hooks), **found.counts())
