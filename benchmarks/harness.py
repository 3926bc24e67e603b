"""Shared machinery of the benchmarks: launch paths, receivers, alternation, table.

Every row module builds a :class:`Row` through :func:`interleave` (contenders
measured in turn, round after round, so that drift of this noisy machine hits
them alike) and :func:`run.py <run>` prints all rows as one Markdown table.

Contenders
----------
``none``
    The floor: the same program with no telemetry (it patches gevent itself;
    this package's gevent plugin is switched off, as for stock).
``stock``
    ``opentelemetry-instrument`` with ``opentelemetry-distro`` and its
    configurator and upstream's ``patch_all`` switch. This package is installed
    in the same environment, so its gevent plugin (which turns on gRPC's gevent
    mode after any ``patch_all``) and its greenlet instrumentor are switched
    off by environment: stock behaves as if this distro were not installed.
``ours``
    ``OTEL_PYTHON_DISTRO=gevent opentelemetry-instrument``.
``ours-site``
    ``python`` with ``PYTHONPATH=$(otel-gevent-distro sitecustomize-path)``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import math
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
APPS_DIR = BENCH_DIR / "apps"
REPO_ROOT = BENCH_DIR.parent
BIN = Path(sys.executable).parent
PYTHON = str(BIN / "python") if (BIN / "python").exists() else sys.executable

NONE, STOCK, OURS, OURS_SITE = "none", "stock", "ours", "ours-site"
#: The stock setup with gRPC's gevent mode on before the SDK is built, as a user
#: who knows ``grpc.experimental.gevent.init_gevent()`` would have it: shows
#: what of the dead-collector gRPC figures that one call explains.
STOCK_GRPC_GEVENT = "stock+grpc-gevent"

#: What selects the stock setup, and keeps this package's own hooks out of it.
STOCK_ENV = {
    "OTEL_PYTHON_DISTRO": "distro",
    "OTEL_PYTHON_CONFIGURATOR": "configurator",
    "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH": "patch_all",
    "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS": "grpc,psycogreen",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "gevent",
}
#: The only part of this package that runs in it is its gevent plugin, right
#: after upstream's patch_all: it calls ``init_gevent()`` when the exporter
#: imports grpc, before the channel exists (and picks gRPC's ``poll`` poller,
#: as that call needs under gevent's subprocess).
STOCK_GRPC_GEVENT_ENV = {**STOCK_ENV, "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS": "psycogreen"}
OURS_ENV = {"OTEL_PYTHON_DISTRO": "gevent"}
#: The floor has no telemetry at all, so this package's gevent plugin stays out of it too.
NONE_ENV = {"OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS": "grpc,psycogreen"}


def log(message: str) -> None:
    """Progress, on stderr so that stdout carries only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Settings of one run
# --------------------------------------------------------------------------


@dataclass
class Bench:
    """Options of one benchmark run, shared by every row."""

    quick: bool = False
    #: Row names to run (empty: all).
    only: frozenset[str] = frozenset()

    def pick(self, quick: Any, full: Any) -> Any:
        """``quick`` in ``BENCH_QUICK=1`` mode, else ``full``."""
        return quick if self.quick else full


def bench_from_environment(only: Sequence[str] = ()) -> Bench:
    return Bench(quick=os.environ.get("BENCH_QUICK", "").strip() not in ("", "0"), only=frozenset(only))


# --------------------------------------------------------------------------
# Launching programs through each launch path
# --------------------------------------------------------------------------


def base_environment() -> dict[str, str]:
    """This environment without any OpenTelemetry or start-up settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "_OTEL_", "BENCH_")) and k not in ("PYTHONPATH", "PYTHONSTARTUP")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["OTEL_SERVICE_NAME"] = "bench"
    return env


_site_folder: str | None = None


def sitecustomize_folder() -> str:
    """What ``otel-gevent-distro sitecustomize-path`` prints (asked once)."""
    global _site_folder
    if _site_folder is None:
        done = subprocess.run(
            [str(BIN / "otel-gevent-distro"), "sitecustomize-path"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        _site_folder = done.stdout.strip()
    return _site_folder


def launch(contender: str, program: Sequence[str], env: dict[str, str] | None = None) -> tuple[list[str], dict]:
    """The command line and environment that start ``program`` as ``contender`` does.

    ``program`` is an argument vector whose first item is an executable
    (``python``, ``gunicorn``...); ``env`` holds the row's own settings.
    """
    full_env = base_environment()
    full_env.update(env or {})
    command = list(program)
    if contender in (STOCK, OURS, STOCK_GRPC_GEVENT):
        full_env.update({STOCK: STOCK_ENV, OURS: OURS_ENV, STOCK_GRPC_GEVENT: STOCK_GRPC_GEVENT_ENV}[contender])
        command = [str(BIN / "opentelemetry-instrument"), *command]
    elif contender == OURS_SITE:
        full_env["PYTHONPATH"] = sitecustomize_folder()
    elif contender == NONE:
        full_env.update(NONE_ENV)
    else:
        raise ValueError(f"unknown contender {contender!r}")
    return command, full_env


@dataclass
class Finished:
    """A child that ran to its end (or was killed at its time limit)."""

    returncode: int
    stdout: str
    stderr: str
    wall_s: float
    cpu_s: float
    maxrss_kb: int
    timed_out: bool

    def last_json(self) -> dict[str, Any]:
        """The last stdout line that parses as a JSON object."""
        for raw in reversed(self.stdout.splitlines()):
            line = raw.strip()
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    return json.loads(line)
        tail = "\n".join(self.stderr.splitlines()[-15:])
        raise RuntimeError(f"no JSON result (exit {self.returncode}, timed out: {self.timed_out})\n{tail}")


def run_child(command: Sequence[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> Finished:
    """Run ``command`` to its end; measure wall and CPU time and the child's peak memory.

    ``os.wait4`` gives the child's own ``ru_maxrss`` (``opentelemetry-instrument``
    execs the program, so it is the program's process). At ``timeout`` the child
    is killed, by its pid.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(command), env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Finished(
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_s=wall,
            cpu_s=usage.ru_utime + usage.ru_stime,
            maxrss_kb=int(usage.ru_maxrss),
            timed_out=expired.is_set(),
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(proc: subprocess.Popen, grace: float = 10) -> None:
    """SIGTERM ``proc`` (one we started), then SIGKILL it after ``grace`` seconds."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(5)


# --------------------------------------------------------------------------
# The OTLP receiver of the test suite, as a separate process
# --------------------------------------------------------------------------


class Receiver:
    """``python -m tests.receiver`` in its own process (healthy or black hole).

    Stops when its stdin closes; :attr:`summary` holds what it printed on exit.
    """

    def __init__(self, mode: str = "healthy") -> None:
        self.mode = mode
        self.summary: dict[str, Any] = {}
        self._proc = subprocess.Popen(
            [PYTHON, "-m", "tests.receiver", "--mode", mode, "--summary"],
            cwd=REPO_ROOT,
            env=base_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.endpoints = self._read_line(60)
        if not self.endpoints:
            self.close()
            raise RuntimeError(f"the {mode} receiver did not start")

    def _read_line(self, timeout: float) -> dict[str, Any]:
        stdout = self._proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        if not ready:
            return {}
        line = stdout.readline()
        return json.loads(line) if line.strip() else {}

    @property
    def http(self) -> str:
        return str(self.endpoints.get("http") or self.endpoints["endpoint"])

    @property
    def grpc(self) -> str:
        return str(self.endpoints.get("grpc") or self.endpoints["endpoint"])

    def env(self, protocol: str) -> dict[str, str]:
        """Exporter settings that point every signal at this receiver."""
        endpoint = self.grpc if protocol == "grpc" else self.http
        return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}

    def close(self) -> None:
        if self._proc.poll() is None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            with contextlib.suppress(ValueError, OSError):
                self.summary = self._read_line(15).get("summary", {})
        stop_process(self._proc, grace=5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_receivers: dict[str, Receiver] = {}


def shared_receiver(mode: str = "healthy") -> Receiver:
    """One receiver per mode for the whole run (each takes a second or two to start)."""
    if mode not in _receivers:
        if not _receivers:
            atexit.register(close_receivers)
        _receivers[mode] = Receiver(mode)
    return _receivers[mode]


def close_receivers() -> dict[str, Any]:
    """Stop the shared receivers; return what each one counted."""
    summaries = {}
    while _receivers:
        mode, receiver = _receivers.popitem()
        receiver.close()
        summaries[mode] = receiver.summary
    return summaries


# --------------------------------------------------------------------------
# Alternation, medians, rows
# --------------------------------------------------------------------------


def interleave(
    contenders: Sequence[str],
    rounds: int,
    measure: Callable[[str], dict[str, float]],
    label: str = "",
) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """Measure each contender once per round, rotating who goes first.

    ``measure(contender)`` returns named figures (one run can yield several,
    e.g. longest and p99 gap). Returns ``metric -> contender -> samples`` and
    the errors met (a failed run is skipped, not fatal).
    """
    samples: dict[str, dict[str, list[float]]] = {}
    errors: list[str] = []
    count = len(contenders)
    for number in range(rounds):
        shift = number % count
        for contender in [*contenders[shift:], *contenders[:shift]]:
            log(f"{label} round {number + 1}/{rounds}: {contender}")
            try:
                figures = measure(contender)
            except Exception as exc:  # noqa: BLE001 - one failed run must not lose the others
                errors.append(f"{contender}: {type(exc).__name__}: {str(exc).strip()[:400]}")
                log(f"{label} {contender} failed: {errors[-1]}")
                continue
            for metric, value in figures.items():
                samples.setdefault(metric, {}).setdefault(contender, []).append(float(value))
    return samples, errors


@dataclass
class Target:
    """What the row must show.

    ``kind``: ``"max"`` (ours' median below ``value``, absolute),
    ``"ratio<="`` / ``"ratio>="`` (ours/stock against ``value``) or ``"info"``.
    """

    kind: str
    value: float = 0.0
    unit: str = ""

    def describe(self) -> str:
        if self.kind == "max":
            return f"< {self.value:g} {self.unit}".strip()
        if self.kind == "ratio<=":
            return f"ratio <= {self.value:.2f}"
        if self.kind == "ratio>=":
            return f"ratio >= {self.value:.2f}"
        return "(info)"


@dataclass
class Row:
    """One line of the table: the samples of each contender and the verdict."""

    name: str
    unit: str
    target: Target
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: Column -> contender measured in it, when it differs from the column name.
    columns: dict[str, str] = field(default_factory=dict)
    unavailable: str = ""
    errors: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def values(self, column: str) -> list[float]:
        return self.samples.get(self.columns.get(column, column), [])

    def median(self, column: str) -> float | None:
        values = self.values(column)
        return statistics.median(values) if values else None

    def ratio(self) -> float | None:
        ours, stock = self.median(OURS), self.median(STOCK)
        if ours is None or stock is None or stock == 0:
            return None
        return ours / stock

    def mark(self) -> str:
        if self.unavailable or self.median(OURS) is None:
            return "n/a"
        ours, ratio = self.median(OURS), self.ratio()
        kind, value = self.target.kind, self.target.value
        if kind == "info":
            return "info"
        if kind == "max":
            met = ours is not None and ours < value
        elif ratio is None:
            return "n/a"
        else:
            met = ratio <= value if kind == "ratio<=" else ratio >= value
        if met:
            return "pass"
        return "explain (overlap)" if self._ranges_overlap() else "explain"

    def _ranges_overlap(self) -> bool:
        """Whether ours' and stock's samples overlap: the miss may be noise."""
        ours, stock = self.values(OURS), self.values(STOCK)
        if not ours or not stock or self.target.kind == "max":
            return False
        return min(ours) <= max(stock) and min(stock) <= max(ours)

    def as_json(self) -> dict[str, Any]:
        columns = (NONE, STOCK, OURS)
        return {
            "name": self.name,
            "unit": self.unit,
            "target": self.target.describe(),
            "columns": {c: self.columns.get(c, c) for c in columns},
            "samples": self.samples,
            "median": {c: self.median(c) for c in columns},
            "ratio": self.ratio(),
            "mark": self.mark(),
            "unavailable": self.unavailable,
            "errors": self.errors,
            "notes": self.notes,
        }


def rows_from(
    samples: dict[str, dict[str, list[float]]],
    specs: Sequence[tuple[str, str, str, Target]],
    errors: list[str],
    notes: dict[str, Any] | None = None,
    columns: dict[str, str] | None = None,
) -> list[Row]:
    """One :class:`Row` per ``(metric, name, unit, target)`` of ``specs``."""
    return [
        Row(
            name=name,
            unit=unit,
            target=target,
            samples=samples.get(metric, {}),
            columns=dict(columns or {}),
            errors=list(errors),
            notes=dict(notes or {}),
        )
        for metric, name, unit, target in specs
    ]


def unavailable_row(name: str, unit: str, target: Target, reason: str) -> Row:
    return Row(name=name, unit=unit, target=target, unavailable=reason)


# --------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    if ratio >= 100:
        return f"{ratio:,.0f}"
    return f"{ratio:.2f}"


def table(rows: Sequence[Row]) -> str:
    """All rows as one Markdown table (medians; ratio is ours/stock)."""
    header = ["row", "unit", "none", "stock", "ours", "ours/stock", "target", "mark"]
    lines = [header]
    for row in rows:
        if row.unavailable:
            lines.append([row.name, row.unit, "-", "-", "n/a (not available)", "-", row.target.describe(), "n/a"])
            continue
        ratio = row.ratio()
        lines.append(
            [
                row.name,
                row.unit,
                _figure(row.median(NONE)),
                _figure(row.median(STOCK)),
                _figure(row.median(OURS)),
                _ratio(ratio),
                row.target.describe(),
                row.mark(),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    numeric = {2, 3, 4, 5}

    def render(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        padded = [cell.rjust(width) if i in numeric else cell.ljust(width) for i, (cell, width) in pairs]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 1) + (":" if i in numeric else "-") for i, w in enumerate(widths)) + "|"
    return "\n".join([render(lines[0]), rule, *map(render, lines[1:])])


def details(rows: Sequence[Row]) -> str:
    """Every sample, and every failed run, under the table."""
    out = []
    for row in rows:
        if row.unavailable:
            out.append(f"- {row.name}: {row.unavailable}")
            continue
        parts = []
        for column in (NONE, STOCK, OURS):
            values = row.values(column)
            if values:
                name = row.columns.get(column, column)
                label = column if name == column else f"{column}={name}"
                parts.append(f"{label} [{', '.join(_figure(v) for v in values)}]")
        out.append(f"- {row.name} ({row.unit}): {'; '.join(parts) or 'no samples'}")
        out.extend(f"    failed run: {error}" for error in dict.fromkeys(row.errors))
    return "\n".join(out)


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        log(f"{label} took {time.perf_counter() - start:.0f} s")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = math.ceil(fraction * len(ordered))
    return ordered[min(len(ordered), max(1, rank)) - 1]


def main_single(run: Callable[[Bench], list[Row]]) -> None:
    """Run one row module alone: ``python benchmarks/<row>.py``."""
    rows = run(bench_from_environment())
    received = close_receivers()
    print(table(rows))
    print()
    print(details(rows))
    print(f"receivers: {json.dumps(received)}")
