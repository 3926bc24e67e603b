"""Delivered spans beside dd-trace-py: process CPU per span made, ended, encoded and sent.

Three contenders, one process each per round, alternating (who goes first
rotates), all running ``apps/delivered_cost.py`` in a patched process:

* ``stock``: the SDK's ``BatchSpanProcessor`` with upstream's OTLP/HTTP exporter;
* ``ours``: the distro's ``GeventBatchSpanProcessor`` with its OTLP/HTTP exporter;
* ``ddtrace``: dd-trace-py's tracer and agent writer, sending to
  ``fake_trace_agent.py`` (a minimal trace agent on 127.0.0.1), started
  through ``ddtrace-run`` (dd-trace-py must be loaded before ``patch_all()``;
  see ``apps/delivered_cost.py``).

Each process makes 20 000 server-like spans with ten attributes (after 512
unmeasured warm-up spans) and flushes; the figure is the process CPU time of
that loop and the final flush (every thread) divided by the spans made. The
queues hold every span (``OTEL_BSP_MAX_QUEUE_SIZE``,
``DD_TRACE_WRITER_BUFFER_SIZE_BYTES``), and each process gets a receiver of
its own (``python -m tests.receiver`` or the fake agent), whose count after
the process has ended must equal the spans made: a run that lost spans is a
failed run, not a sample. The fake agent also checks that every span carries
the ten attributes.

dd-trace-py is installed, with the same gevent and greenlet as this
environment, into an environment of its own that this module creates in the
repository's ``build/`` folder (ignored by git) and reuses afterwards;
``BENCH_DDTRACE_SPEC`` picks another requirement than ``ddtrace`` (e.g.
``ddtrace==4.16.0``). Only tracing runs there: telemetry, remote
configuration, runtime metrics, profiling, stats, crash tracking and the
other products are switched off. When it cannot be installed (no network),
the ddtrace row says so and the stock/ours row is measured anyway.

Rows: ``stock`` against ``ours`` (target: ours at most 0.60 of stock), and
dd-trace-py against ``ours`` (dd-trace-py in the ``stock`` column; target:
ours below it).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import (
    APPS_DIR,
    BENCH_DIR,
    NONE,
    OURS,
    PYTHON,
    REPO_ROOT,
    STOCK,
    Bench,
    Receiver,
    Row,
    Target,
    interleave,
    launch,
    log,
    main_single,
    run_child,
    stop_process,
    unavailable_row,
)

DDTRACE = "ddtrace"
SPANS = 20000
WARMUP = 512
UNIT = "CPU us/delivered span"
#: The environment dd-trace-py is installed into (``build/`` is ignored by git).
DDTRACE_ENV_DIR = REPO_ROOT / "build" / "bench-envs" / "ddtrace"
#: The ten attributes of a measured span, as ``apps/span_cost.py`` sets them.
SPAN_TAGS = (
    "http.request.method",
    "url.path",
    "url.scheme",
    "http.route",
    "http.response.status_code",
    "server.address",
    "server.port",
    "client.address",
    "user_agent.original",
    "network.protocol.version",
)
#: Only the tracer runs: every other product and background reporter is off.
DDTRACE_SETTINGS = {
    "DD_SERVICE": "bench",
    "DD_ENV": "bench",
    "DD_TRACE_ENABLED": "true",
    "DD_INSTRUMENTATION_TELEMETRY_ENABLED": "false",
    "DD_TELEMETRY_DEPENDENCY_COLLECTION_ENABLED": "false",
    "DD_REMOTE_CONFIGURATION_ENABLED": "false",
    "DD_RUNTIME_METRICS_ENABLED": "false",
    "DD_PROFILING_ENABLED": "false",
    "DD_TRACE_STATS_COMPUTATION_ENABLED": "false",
    "DD_TRACE_HEALTH_METRICS_ENABLED": "false",
    "DD_CRASHTRACKING_ENABLED": "false",
    "DD_DYNAMIC_INSTRUMENTATION_ENABLED": "false",
    "DD_EXCEPTION_REPLAY_ENABLED": "false",
    "DD_SYMBOL_DATABASE_UPLOAD_ENABLED": "false",
    "DD_CODE_ORIGIN_FOR_SPANS_ENABLED": "false",
    "DD_DATA_STREAMS_ENABLED": "false",
    "DD_APPSEC_ENABLED": "false",
    "DD_IAST_ENABLED": "false",
    "DD_LLMOBS_ENABLED": "false",
    "DD_TRACE_WRITER_BUFFER_SIZE_BYTES": str(256 << 20),
}


# --------------------------------------------------------------------------
# dd-trace-py's environment
# --------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def _requirements() -> list[str]:
    """ddtrace, and the same gevent and greenlet as the other contenders run."""
    pins = [f"{name}=={_version(name)}" for name in ("gevent", "greenlet") if _version(name)]
    return [os.environ.get("BENCH_DDTRACE_SPEC", "").strip() or "ddtrace", *pins]


def _env_python() -> Path:
    return DDTRACE_ENV_DIR / "bin" / "python"


def _installed_version(python: Path) -> str:
    """The version of ddtrace that ``python`` imports (empty when it cannot, or ``ddtrace-run`` is missing)."""
    if not (python.parent / "ddtrace-run").exists():
        return ""
    try:
        done = subprocess.run(
            [str(python), "-c", "from importlib.metadata import version; import ddtrace; print(version('ddtrace'))"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def _uv() -> str | None:
    local = Path(sys.executable).parent / "uv"
    return str(local) if local.exists() else shutil.which("uv")


def _install(requirements: list[str]) -> None:
    """Create the environment and install ``requirements`` with uv, or venv and pip without it."""
    uv = _uv()
    base = getattr(sys, "_base_executable", None) or sys.executable
    if uv:
        steps = [
            [uv, "venv", "--quiet", "--python", base, str(DDTRACE_ENV_DIR)],
            [uv, "pip", "install", "--quiet", "--python", str(_env_python()), *requirements],
        ]
    else:
        steps = [
            [base, "-m", "venv", str(DDTRACE_ENV_DIR)],
            [str(_env_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *requirements],
        ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"{Path(step[0]).name} {' '.join(step[1:3])}... failed: {tail[:300]}")


def ddtrace_python() -> tuple[Path | None, str, str]:
    """The interpreter with ddtrace, its ddtrace version, and why there is none.

    The environment is reused when it was made for the same requirements;
    otherwise it is made again.
    """
    requirements = _requirements()
    marker = DDTRACE_ENV_DIR / "bench-requirements.json"
    python = _env_python()
    with contextlib.suppress(OSError, ValueError):
        if json.loads(marker.read_text()) == requirements and (version := _installed_version(python)):
            return python, version, ""
    log(f"ddtrace reference: installing {' '.join(requirements)} into {DDTRACE_ENV_DIR.relative_to(REPO_ROOT)}")
    shutil.rmtree(DDTRACE_ENV_DIR, ignore_errors=True)
    try:
        _install(requirements)
    except (OSError, subprocess.SubprocessError, RuntimeError) as exc:
        return None, "", f"not installed: {' '.join(requirements)}: {exc}"
    version = _installed_version(python)
    if not version:
        return None, "", f"not installed: ddtrace does not import in {DDTRACE_ENV_DIR.relative_to(REPO_ROOT)}"
    marker.write_text(json.dumps(requirements))
    return python, version, ""


# --------------------------------------------------------------------------
# The fake trace agent, one per dd-trace-py process
# --------------------------------------------------------------------------


class FakeAgent:
    """``fake_trace_agent.py`` in its own process; stops when its stdin closes."""

    def __init__(self) -> None:
        self.summary: dict[str, Any] = {}
        self._proc = subprocess.Popen(
            [PYTHON, str(BENCH_DIR / "fake_trace_agent.py"), "--expect-tags", ",".join(SPAN_TAGS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = str(self._line(30).get("url", ""))
        if not self.url:
            self.close()
            raise RuntimeError("the fake trace agent did not start")

    def _line(self, timeout: float) -> dict[str, Any]:
        stdout = self._proc.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout)
        line = stdout.readline() if ready else ""
        return json.loads(line) if line.strip() else {}

    def close(self) -> dict[str, Any]:
        if self._proc.poll() is None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            with contextlib.suppress(ValueError, OSError):
                self.summary = self._line(120).get("summary", {})
        stop_process(self._proc, grace=5)
        return self.summary


# --------------------------------------------------------------------------
# One measured process
# --------------------------------------------------------------------------


def _program(python: str, contender: str, spans: int) -> list[str]:
    app = str(APPS_DIR / "delivered_cost.py")
    return [python, app, "--contender", contender, "--spans", str(spans), "--warmup", str(WARMUP)]


def _measure_otel(contender: str, spans: int, runs: list[dict[str, Any]]) -> dict[str, float]:
    receiver = Receiver("healthy")
    try:
        settings = {**receiver.env("http/protobuf"), "OTEL_BSP_MAX_QUEUE_SIZE": str(2 * (spans + WARMUP))}
        command, env = launch(NONE, _program(PYTHON, contender, spans), settings)
        finished = run_child(command, env, timeout=600, cwd=APPS_DIR)
    finally:
        receiver.close()
    result = finished.last_json()
    received = int(receiver.summary.get("http", {}).get("spans", -1))
    return _checked(contender, result, received, finished.cpu_s, runs)


def _measure_ddtrace(python: Path, spans: int, runs: list[dict[str, Any]]) -> dict[str, float]:
    agent = FakeAgent()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DD_", "_DD_", "BENCH_"))}
        env.pop("PYTHONPATH", None)
        env.update(DDTRACE_SETTINGS)
        env.update({"DD_TRACE_AGENT_URL": agent.url, "PYTHONUNBUFFERED": "1"})
        command = [str(python.parent / "ddtrace-run"), *_program(str(python), DDTRACE, spans)]
        finished = run_child(command, env, timeout=600, cwd=APPS_DIR)
    finally:
        summary = agent.close()
    result = finished.last_json()
    if not result.get("ddtrace_loaded_before_patch"):
        raise RuntimeError("ddtrace was not loaded before gevent's patch_all")
    if summary.get("spans_missing_tags") or summary.get("decode_errors"):
        raise RuntimeError(f"incomplete spans at the fake agent: {json.dumps(summary)[:300]}")
    result["agent"] = summary
    return _checked(DDTRACE, result, int(summary.get("spans", -1)), finished.cpu_s, runs)


def _checked(
    contender: str, result: dict[str, Any], received: int, process_cpu_s: float, runs: list[dict[str, Any]]
) -> dict[str, float]:
    """The sample, once the receiving end counted every span the process made."""
    made = int(result["made"])
    runs.append({"contender": contender, "received": received, "process_cpu_s": process_cpu_s, **result})
    if received != made:
        raise RuntimeError(f"{contender}: {made} spans made, {received} received")
    log(f"  {contender}: {result['cpu_us']:.1f} CPU us/span, {received}/{made} spans received")
    return {"cpu": float(result["cpu_us"]), "wall": float(result["wall_us"])}


# --------------------------------------------------------------------------
# The rows
# --------------------------------------------------------------------------


def run(bench: Bench) -> list[Row]:
    spans = SPANS
    rounds = bench.pick(2, 7)
    stock_name = f"span delivered ({spans // 1000}k spans), OTLP/HTTP"
    ddtrace_name = f"span delivered ({spans // 1000}k spans): dd-trace-py as stock"
    stock_target, ddtrace_target = Target("ratio<=", 0.60), Target("ratio<=", 1.0)

    python, version, missing = ddtrace_python()
    contenders = [STOCK, OURS] if python is None else [STOCK, OURS, DDTRACE]
    runs: list[dict[str, Any]] = []

    def measure(contender: str) -> dict[str, float]:
        if contender == DDTRACE:
            assert python is not None
            return _measure_ddtrace(python, spans, runs)
        return _measure_otel(contender, spans, runs)

    log(f"ddtrace reference: {rounds} rounds of {', '.join(contenders)}, {spans} spans per process")
    samples, errors = interleave(contenders, rounds, measure, label="ddtrace reference")
    cpu = samples.get("cpu", {})
    wall = samples.get("wall", {})
    notes = {
        "spans": spans,
        "warmup": WARMUP,
        "rounds": rounds,
        "ddtrace": version or missing,
        "wall_us": wall,
        "runs": runs,
    }
    rows = [
        Row(
            name=stock_name,
            unit=UNIT,
            target=stock_target,
            samples={c: cpu[c] for c in (STOCK, OURS) if c in cpu},
            errors=errors,
            notes=notes,
        )
    ]
    if python is None:
        name = f"{ddtrace_name} (dd-trace-py not installed)"
        rows.append(unavailable_row(name, UNIT, ddtrace_target, f"dd-trace-py {missing}"))
    else:
        rows.append(
            Row(
                name=f"{ddtrace_name} ({version})",
                unit=UNIT,
                target=ddtrace_target,
                samples={c: cpu[c] for c in (DDTRACE, OURS) if c in cpu},
                columns={STOCK: DDTRACE},
                errors=errors,
                notes=notes,
            )
        )
    return rows


if __name__ == "__main__":
    main_single(run)
