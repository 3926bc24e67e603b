"""Row 5, served requests: a Flask app on gunicorn's gevent worker under load.

``apps/flask_app.py`` (one route) runs as ``gunicorn -k gevent -w 1``, plain
(``none``) or through ``opentelemetry-instrument`` (``stock``, ``ours``; the
Flask instrumentation makes one server span per request, every signal
exports over OTLP/HTTP to a healthy receiver). Load comes from a second
process on 127.0.0.1: ``wrk`` when installed, else ``benchmarks/loadgen.py``.
After a short warm-up, one bounded measurement gives requests per second and
the p99 latency. Each telemetry run has a receiver of its own, which
counts the spans that arrived: the row "spans delivered" is that count over
the requests served (the readiness probe and warm-up included; one server
span per request), after gunicorn stopped and its worker exported at exit.
The worker's CPU (every thread: the hub's and the export threads', from
``/proc``) over the measured load, divided by the requests it answered, is
the row "worker CPU per request": unlike requests per second, it does not
depend on how the two cores are shared with the load generator and the
receiver.
A pipeline that drops spans does less export work, which flatters its
throughput, so the two rows are read together; the rows "stock's queue
holding every span" compare ours with stock configured to drop nothing
(``OTEL_BSP_MAX_QUEUE_SIZE`` larger than the run's spans).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from functools import cache, partial
from pathlib import Path

from harness import (
    APPS_DIR,
    BENCH_DIR,
    BIN,
    NONE,
    OURS,
    PYTHON,
    STOCK,
    Bench,
    Receiver,
    Row,
    Target,
    free_port,
    interleave,
    launch,
    log,
    main_single,
    rows_from,
    stop_process,
)

SETTINGS = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp"}
#: Stock with a span queue that holds every span of the run: it drops none, so it
#: does all the export work that ours does (the default queue of 2 048 fills
#: under saturation, and every span stock drops is export work it saves).
STOCK_NO_DROP = "stock-queue-holds-all"
NO_DROP_SETTINGS = {"OTEL_BSP_MAX_QUEUE_SIZE": "1000000"}
WORKERS = 1
CONNECTIONS = 16
UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@cache
def _has_control_socket() -> bool:
    """gunicorn >= 26 opens a control socket in the home folder unless told not to."""
    done = subprocess.run([str(BIN / "gunicorn"), "--help"], check=False, capture_output=True, text=True, timeout=60)
    return "--no-control-socket" in done.stdout


def _gunicorn_command(port: int) -> list[str]:
    command = [str(BIN / "gunicorn"), "-k", "gevent", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}"]
    command += ["--chdir", str(APPS_DIR), "--log-level", "warning"]
    if _has_control_socket():
        command.append("--no-control-socket")
    return [*command, "flask_app:app"]


def _wait_ready(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/")
            if connection.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass
        finally:
            connection.close()
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer in time")


def _parse_wrk(text: str) -> dict[str, float]:
    total = re.search(r"(\d+) requests in", text)
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    if not rps or not p99:
        raise RuntimeError(f"cannot read wrk's output:\n{text[-600:]}")
    errors = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", text)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failed = int(errors.group(1)) if errors else 0
    failed += sum(int(n) for n in sockets.groups()) if sockets else 0
    p99_ms = float(p99.group(1)) * UNITS[p99.group(2)]
    requests = int(total.group(1)) if total else 0
    return {"rps": float(rps.group(1)), "p99": p99_ms, "errors": failed, "requests": requests}


def _load(port: int, seconds: float) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk:
        command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--latency", f"http://127.0.0.1:{port}/"]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
        return _parse_wrk(done.stdout)
    command = [PYTHON, str(BENCH_DIR / "loadgen.py"), "127.0.0.1", str(port)]
    command += ["--connections", str(CONNECTIONS), "--seconds", str(seconds)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return {"rps": result["rps"], "p99": result["p99_ms"], "errors": result["errors"], "requests": result["requests"]}


def _worker_pid(master: int) -> int:
    """gunicorn's one worker: the master's child (the launcher execs into the master)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    if len(children) != 1:
        raise RuntimeError(f"expected one gunicorn worker, found {children}")
    return int(children[0])


def _cpu_seconds(pid: int) -> float:
    """User and system CPU of every thread of ``pid`` so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(seconds: float, contender: str) -> dict[str, float]:
    with Receiver() as receiver:
        figures = _serve(receiver, seconds, contender)
    served = figures.pop("served")
    if contender == NONE:
        return figures
    return {**figures, "delivered": 100.0 * receiver.summary.get("http", {}).get("spans", 0) / served}


def _serve(receiver: Receiver, seconds: float, contender: str) -> dict[str, float]:
    port = free_port()
    settings = {**SETTINGS, **receiver.env("http/protobuf")}
    if contender == STOCK_NO_DROP:
        contender, settings = STOCK, {**settings, **NO_DROP_SETTINGS}
    command, env = launch(contender, _gunicorn_command(port), settings)
    with tempfile.TemporaryFile() as output:
        proc = subprocess.Popen(command, env=env, cwd=APPS_DIR, stdin=subprocess.DEVNULL, stdout=output, stderr=output)
        try:
            _wait_ready(port, proc)
            warm_up = _load(port, 1)
            worker = _worker_pid(proc.pid)
            cpu_before = _cpu_seconds(worker)
            figures = _load(port, seconds)
            cpu = _cpu_seconds(worker) - cpu_before
            if figures["requests"]:
                figures["cpu_us"] = cpu / figures["requests"] * 1e6
        finally:
            stop_process(proc)
        output.seek(0)
        said = output.read().decode(errors="replace")
    if figures["errors"]:
        log(f"served requests {contender}: {figures['errors']:.0f} failed requests; gunicorn said: {said[-600:]}")
    return {**figures, "served": warm_up["requests"] + figures["requests"] + 1}


def run(bench: Bench) -> list[Row]:
    seconds = bench.pick(2.0, 8.0)
    measure = partial(_measure, seconds)
    samples, errors = interleave([NONE, STOCK, OURS, STOCK_NO_DROP], bench.pick(1, 3), measure, "served requests")
    generator = "wrk" if shutil.which("wrk") else "loadgen.py"
    notes = {"seconds": seconds, "workers": WORKERS, "connections": CONNECTIONS, "load": generator}
    specs = (
        ("rps", f"served requests (gunicorn -k gevent, {generator})", "req/s", Target("ratio>=", 1.1)),
        ("cpu_us", "served requests: worker CPU per request, every thread", "CPU us", Target("ratio<=", 1.0)),
        ("p99", "served requests: p99 latency", "ms", Target("ratio<=", 1.0)),
        ("delivered", "served requests: server spans delivered", "%", Target("info")),
    )
    rows = rows_from(samples, specs, errors, notes)
    holding = "served requests, stock's queue holding every span"
    no_drop = (
        ("rps", holding, "req/s", Target("ratio>=", 1.1)),
        ("cpu_us", f"{holding}: worker CPU per request", "CPU us", Target("ratio<=", 1.0)),
        ("delivered", f"{holding}: spans delivered", "%", Target("info")),
    )
    rows += rows_from(samples, no_drop, errors, notes, columns={STOCK: STOCK_NO_DROP})
    for row in rows:
        row.notes["failed_requests"] = samples.get("errors", {})
    return rows


if __name__ == "__main__":
    main_single(run)
