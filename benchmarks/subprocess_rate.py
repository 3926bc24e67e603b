"""Row 3, subprocess spawn: ``subprocess.run(["true"])`` per second under gevent.

``apps/spawner.py`` spawns ``true`` in a loop, one span per call, with every
signal exporting over OTLP/HTTP to a healthy receiver. Each child created by
gevent's ``subprocess`` runs the at-fork hooks of the telemetry pipeline
before it execs: whatever they do is paid on every call. Besides the rate,
the CPU time per call (the program and its children) is reported: it does
not move with the machine's load as much as the rate does, and it also
shows that a larger parent process forks more slowly. The program then
idles and reports the CPU its telemetry uses while the app does nothing.
"""

from __future__ import annotations

import re
from functools import partial

from harness import (
    APPS_DIR,
    NONE,
    OURS,
    PYTHON,
    STOCK,
    Bench,
    Receiver,
    Row,
    Target,
    interleave,
    launch,
    main_single,
    rows_from,
    run_child,
    shared_receiver,
)

SETTINGS = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp"}
NOISE = re.compile(r"AssertionError|Traceback|KeyError")


def _measure(
    receiver: Receiver, seconds: float, idle: float, noise: dict[str, int], contender: str
) -> dict[str, float]:
    program = [PYTHON, str(APPS_DIR / "spawner.py"), "--seconds", str(seconds), "--idle", str(idle)]
    command, env = launch(contender, program, {**SETTINGS, **receiver.env("http/protobuf")})
    done = run_child(command, env, timeout=seconds + 120, cwd=APPS_DIR)
    noise[contender] = noise.get(contender, 0) + len(NOISE.findall(done.stderr))
    result = done.last_json()
    return {"rate": result["per_s"], "cpu": result["cpu_ms_per_call"], "idle": result["idle_cpu_percent"]}


def run(bench: Bench) -> list[Row]:
    seconds, idle = bench.pick(1.5, 4.0), bench.pick(1.5, 3.0)
    noise: dict[str, int] = {}
    measure = partial(_measure, shared_receiver("healthy"), seconds, idle, noise)
    samples, errors = interleave([NONE, STOCK, OURS], bench.pick(1, 3), measure, "subprocess spawn")
    spec = (
        ("rate", "subprocess.run(['true']) rate", "calls/s", Target("ratio>=", 1.0)),
        ("cpu", "subprocess.run(['true']) CPU per call", "CPU ms", Target("ratio<=", 1.0)),
        ("idle", "idle CPU after the work (all pipelines started)", "% of a core", Target("max", 1.0, "%")),
    )
    return rows_from(samples, spec, errors, {"stderr_noise_lines": noise, "seconds": seconds, "idle_seconds": idle})


if __name__ == "__main__":
    main_single(run)
