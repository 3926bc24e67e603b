"""Run real servers (gunicorn, uWSGI, Celery, Redis) the way a user does, and check their traces.

Each server runs in its own session (process group) with its output in a file;
:class:`ServerProcess` always kills the whole group when its ``with`` block
ends, whatever happened inside. :func:`launch_command` wraps a server's
command line in one of the distro's launch paths, exactly as
:func:`tests.launch.run_app` does for scripts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from tests.launch import ALL_INSTRUMENTATIONS, BIN, NOISE, clean_environment, sitecustomize_folder
from tests.receiver import OtlpReceiver, ReceivedSpan

APPS = Path(__file__).resolve().parent / "apps"
LOCALHOST = "127.0.0.1"

# SpanKind values as they travel in OTLP.
SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind((LOCALHOST, 0))
        return int(probe.getsockname()[1])


def launch_command(
    command: Sequence[str], via: str, env: dict[str, str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """``command`` and its environment for the launch path ``via``.

    ``"instrument"`` prefixes ``opentelemetry-instrument`` and selects the
    distro with ``OTEL_PYTHON_DISTRO=gevent``; ``"sitecustomize"`` puts the
    distro's sitecustomize folder first on ``PYTHONPATH``.
    """
    full_env = {**clean_environment(), **ALL_INSTRUMENTATIONS}
    full_env.update(env or {})
    if via == "instrument":
        full_env.setdefault("OTEL_PYTHON_DISTRO", "gevent")
        return [str(BIN / "opentelemetry-instrument"), *command], full_env
    if via == "sitecustomize":
        extra = full_env.get("PYTHONPATH")
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [sitecustomize_folder(), extra]))
        return list(command), full_env
    raise ValueError(f"unknown launch path {via!r}")


def assert_no_noise(name: str, output: str) -> None:
    """Nothing of :data:`tests.launch.NOISE` (errors, the distro's loss lines) in a server's output."""
    found = NOISE.search(output)
    assert not found, f"{name} printed {found.group(0)!r}:\n{output}"


class ServerProcess:
    """A long-running program in its own process group, its output in ``log``."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name = name
        self.command = list(command)
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            self.command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def wait_for_output(self, pattern: str, timeout: float) -> re.Match[str]:
        """Wait until the output matches ``pattern``; fail with the output if it never does."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = regex.search(self.output())
            if found:
                return found
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"{self.name} never printed {pattern!r} (exit code {self.process.poll()}):\n{self.output()}")

    def wait_for_http(self, url: str, timeout: float) -> None:
        """Wait until ``url`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return
            time.sleep(0.1)
        pytest.fail(f"{self.name} never answered {url} (exit code {self.process.poll()}):\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``sig`` to the server's main process and wait for it to exit."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} did not exit within {timeout}s of signal {sig}:\n{self.output()}")

    def kill_group(self) -> None:
        """SIGKILL everything left in the server's process group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        self._log_file.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill_group()


def get_json(url: str, timeout: float = 15) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return json.loads(answer.read())


def send_requests(base_url: str, count: int, concurrency: int = 4) -> list[dict[str, int]]:
    """``GET /front/<i>`` for i in 0..count-1, a few at a time; the JSON answers in order."""
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(lambda i: get_json(f"{base_url}/front/{i}"), range(count)))


def serve_requests(server: ServerProcess, base_url: str, count: int) -> list[dict[str, int]]:
    """:func:`send_requests`, failing with the server's output when a request fails."""
    try:
        answers = send_requests(base_url, count)
    except OSError as exc:  # urllib's HTTPError and URLError are OSErrors
        pytest.fail(f"a request to {server.name} failed ({exc}); its output:\n{server.output()}")
    assert sorted(a["n"] for a in answers) == list(range(count))
    return answers


def assert_notes_written_by_workers(notes: Path, answers: list[dict[str, int]], count: int) -> None:
    """Each ``/back`` request's background greenlet ran once, in the worker that served it.

    A note from any other pid means a forked child (the ``/back`` subprocess,
    before its ``exec``) ran the server's gevent hub and its greenlets.
    """
    lines = notes.read_text().split() if notes.exists() else []
    written = [(int(pid), int(n)) for pid, n in zip(lines[::2], lines[1::2], strict=True)]
    workers = {a["back_pid"] for a in answers}
    strangers = sorted({pid for pid, _ in written if pid not in workers})
    assert not strangers, (
        f"greenlets of the server ran in forked children {strangers} (workers: {sorted(workers)}): {written}"
    )
    assert sorted(n for _, n in written) == list(range(count)), f"notes: {written}"


# --- metrics ------------------------------------------------------------------

#: The server-duration histogram, by the semantic conventions the Flask instrumentation follows.
SERVER_DURATION = ("http.server.request.duration", "http.server.duration")


def requests_served(answers: list[dict[str, int]]) -> int:
    """Requests the workers served: each ``/front`` request makes a ``/back`` one."""
    return 2 * len(answers)


def requests_counted(receiver: OtlpReceiver) -> int:
    """Requests counted by the server-duration metrics that arrived, over every export.

    With an export interval longer than the test, each worker exports once,
    at exit, its cumulative count: the sum is what every worker delivered.
    """
    return sum(
        int(point.get("count", 0))
        for metric in receiver.metrics()
        if metric.name in SERVER_DURATION
        for point in metric.data_points
    )


# --- traces -------------------------------------------------------------------


@dataclass(frozen=True)
class FrontBackTraces:
    """What the receiver got for ``count`` requests to the Flask app of ``tests/apps``."""

    front: list[ReceivedSpan]
    back: list[ReceivedSpan]
    clients: list[ReceivedSpan]
    traces: int

    def counts(self) -> dict[str, int]:
        return {"front": len(self.front), "client": len(self.clients), "back": len(self.back), "traces": self.traces}

    def summary(self) -> str:
        return " ".join(f"{key}={value}" for key, value in self.counts().items())


def _route(span: ReceivedSpan) -> str:
    return str(span.attributes.get("http.route", ""))


def front_back_traces(spans: list[ReceivedSpan]) -> FrontBackTraces:
    servers = [s for s in spans if s.kind == SERVER]
    return FrontBackTraces(
        front=[s for s in servers if _route(s).startswith("/front")],
        back=[s for s in servers if _route(s).startswith("/back")],
        clients=[s for s in spans if s.kind == CLIENT],
        traces=len({s.trace_id for s in spans}),
    )


def descends_from(span: ReceivedSpan, ancestor: ReceivedSpan, by_id: dict[str, ReceivedSpan]) -> bool:
    """True when ``ancestor`` is on ``span``'s parent chain (same trace)."""
    current = span
    while current.parent_span_id:
        if current.trace_id != ancestor.trace_id:
            return False
        if current.parent_span_id == ancestor.span_id:
            return True
        parent = by_id.get(current.parent_span_id)
        if parent is None:
            return False
        current = parent
    return False


def assert_front_back_traces(spans: list[ReceivedSpan], count: int) -> FrontBackTraces:
    """Exactly ``count`` traces of front -> requests client -> back, each correctly parented."""
    found = front_back_traces(spans)
    listing = "\n".join(f"  {s.name} kind={s.kind} trace={s.trace_id[:8]} parent={s.parent_span_id[:8]}" for s in spans)
    detail = f"{found.summary()}; spans:\n{listing}"
    assert len(found.front) == count, f"expected {count} front server spans: {detail}"
    assert len(found.back) == count, f"expected {count} back server spans: {detail}"
    assert len(found.clients) == count, f"expected {count} client spans: {detail}"
    by_id = {s.span_id: s for s in spans}
    fronts = {s.trace_id: s for s in found.front}
    assert len(fronts) == count, f"front spans share traces: {detail}"
    for front in found.front:
        assert not front.parent_span_id, f"front span has a parent: {detail}"
    for client in found.clients:
        front = fronts.get(client.trace_id)
        assert front is not None, f"client span {client.span_id} is in no front trace: {detail}"
        assert descends_from(client, front, by_id), (
            f"client span {client.span_id} is not under its front span: {detail}"
        )
    clients = {s.span_id: s for s in found.clients}
    for back in found.back:
        assert back.parent_span_id in clients, f"back span {back.span_id} is not a child of a client span: {detail}"
    assert all(s.resource.get("service.name") == "test-app" for s in spans), detail
    return found


def report(server: str, via: str, **counts: object) -> None:
    """One line per server run, shown by ``pytest -rP``."""
    values = " ".join(f"{key}={value}" for key, value in counts.items())
    print(f"SERVER-RESULT {server} via={via} gevent={version('gevent')} {values}")


# --- Redis ----------------------------------------------------------------------


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server); Celery test skipped")
    return found


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A throw-away Redis on a free port of 127.0.0.1; yields its URL."""
    binary = redis_server_binary()
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        binary,
        "--bind",
        LOCALHOST,
        "--port",
        str(port),
        "--dir",
        str(folder),
        "--save",
        "",
        "--appendonly",
        "no",
        "--protected-mode",
        "yes",
    ]
    with ServerProcess("redis-server", command, dict(os.environ), folder, folder / "redis.log") as server:
        server.wait_for_output(r"Ready to accept connections", timeout=15)
        yield f"redis://{LOCALHOST}:{port}/0"
