"""Idle CPU: what telemetry costs a gevent app that has nothing to do.

``apps/idle.py`` makes one span and one metric point (every export pipeline
is then started), then sleeps on the hub; the figure is the process CPU time
of the idle window as a percentage of one core. Every signal exports over
OTLP/HTTP to a healthy receiver. A background worker that wakes far more
often than its schedule shows here at once.
"""

from __future__ import annotations

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


def _measure(receiver: Receiver, seconds: float, contender: str) -> dict[str, float]:
    program = [PYTHON, str(APPS_DIR / "idle.py"), "--seconds", str(seconds)]
    command, env = launch(contender, program, {**SETTINGS, **receiver.env("http/protobuf")})
    return {"cpu": run_child(command, env, timeout=seconds + 120, cwd=APPS_DIR).last_json()["cpu_percent"]}


def run(bench: Bench) -> list[Row]:
    seconds = bench.pick(2.0, 4.0)
    measure = partial(_measure, shared_receiver("healthy"), seconds)
    samples, errors = interleave([NONE, STOCK, OURS], bench.pick(1, 3), measure, "idle CPU")
    spec = (("cpu", "idle CPU after the first span", "% of a core", Target("max", 1.0, "%")),)
    return rows_from(samples, spec, errors, {"seconds": seconds})


if __name__ == "__main__":
    main_single(run)
