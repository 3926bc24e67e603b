"""Row 1, hub stall: how long can telemetry freeze every greenlet of the app?

``apps/ticker.py`` runs under each launch path while it makes spans; a greenlet
ticks every 1 ms and the program reports the longest and the p99 gap between
ticks. Two collectors, each over OTLP/gRPC and OTLP/HTTP:

* healthy: the test suite's OTLP receiver, about 5 000 spans/s;
* dead: a black hole that accepts connections and never answers, 600 spans,
  export timeout 3 s.

Over OTLP/gRPC a fourth contender, ``stock+grpc-gevent``, is the stock setup
with gRPC's gevent mode turned on before the SDK builds its exporter (what
``grpc.experimental.gevent.init_gevent()`` in the right place gives any
user); its rows put it in the stock column, so the dead-collector gRPC win is
attributed to what causes it.

All contenders get the same settings: traces only (metrics and logs off), a
500 ms batch schedule, a 3 s export timeout. The ``none`` floor is the same
program without telemetry (measured once per collector, shown in both rows).

With a healthy collector the rows also give the longest gap once garbage
collector pauses are taken out (a full collection of the heap that
``opentelemetry-instrument`` loads lasts about 100 ms on a slow machine,
whoever exports) and the spans per second the producer managed: it falls
behind when the process runs out of CPU, and making more spans in the same
window means more export work.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any

from harness import (
    APPS_DIR,
    NONE,
    OURS,
    PYTHON,
    STOCK,
    STOCK_GRPC_GEVENT,
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

HEALTHY_RATE = 5000
DEAD_SPANS = 600
SETTINGS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_BSP_SCHEDULE_DELAY": "500",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "3",
}
#: The SDK's and the distro's log lines about a full export queue.
QUEUE_FULL = re.compile(r"queue full", re.IGNORECASE)
PROTOCOLS = (("grpc", "OTLP/gRPC"), ("http/protobuf", "OTLP/HTTP"))


def _measure(
    receiver: Receiver, protocol: str, spans: int, seconds: float, facts: dict[str, Any], contender: str
) -> dict[str, float]:
    env = {**SETTINGS, **receiver.env(protocol)}
    program = [PYTHON, str(APPS_DIR / "ticker.py"), "--spans", str(spans), "--seconds", str(seconds)]
    command, full_env = launch(contender, program, env)
    done = run_child(command, full_env, timeout=seconds + 120, cwd=APPS_DIR)
    result = done.last_json()
    keys = ("processors", "dropped", "grpc_gevent_mode", "spans", "worst", "gc_longest")
    fact = {key: result.get(key) for key in keys}
    fact["queue_full_lines"] = len(QUEUE_FULL.findall(done.stderr))
    facts.setdefault(contender, []).append(fact)
    return {
        "max": result["max_ms"],
        "max_outside_gc": result["max_outside_gc_ms"],
        "p99": result["p99_ms"],
        "rate": result["spans"] / seconds,
    }


def _specs(mode: str, title: str, protocol_name: str, limit: float) -> list[tuple[str, str, str, Target]]:
    target = Target("max", limit, "ms")
    prefix = f"hub stall, {title}, {protocol_name}"
    specs = [("max", f"{prefix}: longest gap", "ms", target)]
    if mode == "healthy":
        specs.append(("max_outside_gc", f"{prefix}: longest gap outside GC pauses", "ms", target))
    specs.append(("p99", f"{prefix}: p99 gap", "ms", target))
    if mode == "healthy":
        specs.append(("rate", f"{prefix}: spans made per second", "spans/s", Target("info")))
    return specs


def run(bench: Bench) -> list[Row]:
    rounds = bench.pick(1, 3)
    healthy_s, dead_s = bench.pick(1.5, 4.0), bench.pick(3.5, 6.0)
    scenarios = (
        ("healthy", "healthy", round(HEALTHY_RATE * healthy_s), healthy_s, 20.0),
        ("blackhole", "dead collector", DEAD_SPANS, dead_s, 50.0),
    )
    rows: list[Row] = []
    for mode, title, spans, seconds, limit in scenarios:
        receiver = shared_receiver(mode)
        floor: dict[str, dict[str, list[float]]] = {}
        for index, (protocol, protocol_name) in enumerate(PROTOCOLS):
            facts: dict[str, Any] = {}
            measure = partial(_measure, receiver, protocol, spans, seconds, facts)
            # The floor does not depend on the protocol: measured with the first one only.
            contenders = [NONE, STOCK, OURS] if index == 0 else [STOCK, OURS]
            if protocol == "grpc":
                contenders.append(STOCK_GRPC_GEVENT)
            samples, errors = interleave(contenders, rounds, measure, f"hub stall {title} {protocol_name}")
            if index == 0:
                floor = {metric: {NONE: by.get(NONE, [])} for metric, by in samples.items()}
            else:
                for metric, by in floor.items():
                    samples.setdefault(metric, {}).update(by)
            notes = {"spans_per_s_asked": spans / seconds, "seconds": seconds, "runs": facts}
            rows += rows_from(samples, _specs(mode, title, protocol_name, limit), errors, notes)
            if protocol == "grpc":
                # The same runs, with stock's column taken by stock plus gRPC's gevent mode.
                rows += rows_from(
                    samples,
                    _specs(mode, title, f"{protocol_name}, stock with gRPC's gevent mode", limit),
                    errors,
                    notes,
                    columns={STOCK: STOCK_GRPC_GEVENT},
                )
    return rows


if __name__ == "__main__":
    main_single(run)
