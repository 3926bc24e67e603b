"""The health-costs program: what context propagation, the greenlet count and gevent's monitor thread add.

``--measure spawn``: spawn ``--greenlets`` greenlets that do nothing and join
them; the figure is the process CPU time of the batch divided by the number
of greenlets, in microseconds, the greenlets' release included. Five states,
switched between batches, rotating which goes first:

* ``plain``: nothing of the distro on, no span active;
* ``plain-span``: nothing of the distro on, inside an active span;
* ``context``: ``GeventInstrumentor`` on, no span active;
* ``context-span``: ``GeventInstrumentor`` on, inside an active span;
* ``count``: the distro's health monitoring started
  (``start_health_monitoring`` with an SDK ``MeterProvider`` and an in-memory
  reader, ``stop_health_monitoring`` to leave the state). Run it with
  ``GEVENT_MONITOR_THREAD_ENABLE=false``: the monitor then starts no thread and
  the state adds the greenlet count's spawn callback (and a lag probe that
  wakes once a second), nothing else.

After the timed batches, untimed checks: the share of children that saw the
parent span in each span state, and the greenlets the count saw.

``--measure switch``: ``gevent.sleep(0)`` ``--switches`` times per batch; the
figure is process CPU microseconds per round trip (main greenlet to hub and
back). Whether gevent's monitor thread runs is the process's own state, set
by gevent's ``GEVENT_MONITOR_THREAD_ENABLE`` (gevent starts the thread when
the hub first runs); the program reports whether the thread and its switch
tracer are on. ``--parking`` starts the distro's parking monitor instead.
``--io``: each round trip is a one-byte ping-pong with another greenlet over
a socket pair instead, so that the hub polls twice per round trip (what the
parking monitor's two loop callbacks are paid on).
"""

from __future__ import annotations

import argparse
import statistics
from functools import partial
from typing import Any

from appkit import ensure_patched, finish

SPAWN_STATES = ("plain", "plain-span", "context", "context-span", "count")


def measure_spawn(args: argparse.Namespace) -> dict[str, Any]:
    import contextlib
    import gc
    import time

    import gevent
    from opentelemetry import trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider

    from otel_gevent_distro.health import start_health_monitoring, stop_health_monitoring
    from otel_gevent_distro.instrumentation import GeventInstrumentor

    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("bench.health_cost")
    instrumentor = GeventInstrumentor()
    monitors: list[Any] = []

    def enter(state: str) -> None:
        wants_context = state.startswith("context")
        if wants_context and not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
        elif not wants_context and instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()
        if state == "count" and not monitors:
            # A provider of its own each time: the same one would get the instruments twice.
            provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
            monitor = start_health_monitoring(meter_provider=provider)
            if monitor is None:
                raise RuntimeError("start_health_monitoring() returned None")
            monitors.append(monitor)
        elif state != "count" and monitors:
            stop_health_monitoring()
            monitors.clear()

    def noop() -> None:
        pass

    def batch(state: str) -> float:
        enter(state)
        span = tracer.start_as_current_span("parent") if state.endswith("-span") else contextlib.nullcontext()
        gc.collect()
        with span:
            start = time.process_time()
            greenlets = [gevent.spawn(noop) for _ in range(args.greenlets)]
            gevent.joinall(greenlets)
            del greenlets  # freed inside the window: the count's weak references go here
            elapsed = time.process_time() - start
        return elapsed / args.greenlets * 1e6

    samples: dict[str, list[float]] = {state: [] for state in SPAWN_STATES}
    for state in SPAWN_STATES:  # warm-up
        batch(state)
    for number in range(args.rounds):
        shift = number % len(SPAWN_STATES)
        for state in [*SPAWN_STATES[shift:], *SPAWN_STATES[:shift]]:
            samples[state].append(batch(state))

    return {"us_per_spawn": samples, **check_states(enter, tracer, monitors)}


def check_states(enter: Any, tracer: Any, monitors: list[Any]) -> dict[str, Any]:
    """Untimed: the states are what they claim to be (children see the parent span; the count counts)."""
    import gevent
    from opentelemetry import trace

    propagated: dict[str, float] = {}
    for state in ("plain-span", "context-span"):
        enter(state)
        seen: list[bool] = []
        with tracer.start_as_current_span("parent") as parent:
            expected = parent.get_span_context().span_id

            def child(expected: int = expected, seen: list[bool] = seen) -> None:
                seen.append(trace.get_current_span().get_span_context().span_id == expected)

            gevent.joinall([gevent.spawn(child) for _ in range(100)])
        propagated[state] = sum(seen) / max(1, len(seen))
    enter("count")
    monitor = monitors[0]
    waiting = [gevent.spawn(gevent.sleep, 0.05) for _ in range(100)]
    gevent.sleep(0)
    counted = monitor.live_greenlets()
    gevent.joinall(waiting)
    enter("plain")
    return {"propagated": propagated, "count_saw_of_100": counted, "count_reports_blocking": monitor.reports_blocking}


def measure_switch(args: argparse.Namespace) -> dict[str, Any]:
    import gc
    import time

    import gevent
    import greenlet

    if args.parking:
        from otel_gevent_distro.health.parking_monitor import start_parking_monitor

        start_parking_monitor(gevent.get_hub())
    gevent.sleep(0)  # the hub runs: gevent starts its monitor thread here when it is enabled
    monitor = gevent.get_hub().periodic_monitoring_thread
    step = _ping_pong() if args.io else partial(gevent.sleep, 0)

    def batch() -> float:
        gc.collect()
        start = time.process_time()
        for _ in range(args.switches):
            step()
        return (time.process_time() - start) / args.switches * 1e6

    batch()  # warm-up
    samples = [batch() for _ in range(args.batches)]
    return {
        "us_per_switch": statistics.median(samples),
        "batches": samples,
        "monitor_thread": bool(monitor is not None and getattr(monitor, "should_run", False)),
        "switch_tracer": greenlet.gettrace() is not None,
        "parking": type(monitor).__name__ == "ParkingMonitor",
        "max_blocking_time": gevent.config.max_blocking_time,
    }


def _ping_pong() -> Any:
    """One round trip: a byte to an echoing greenlet and back, each side waiting in the hub."""
    import socket

    import gevent

    ours, theirs = socket.socketpair()

    def echo() -> None:
        while theirs.recv(1):
            theirs.sendall(b"x")

    gevent.spawn(echo)

    def step() -> None:
        ours.sendall(b"x")
        ours.recv(1)

    return step


def main() -> None:
    ensure_patched()
    parser = argparse.ArgumentParser()
    parser.add_argument("--measure", choices=("spawn", "switch"), required=True)
    parser.add_argument("--greenlets", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--switches", type=int, default=20000)
    parser.add_argument("--batches", type=int, default=7)
    parser.add_argument("--parking", action="store_true", help="switch: start the distro's parking monitor")
    parser.add_argument("--io", action="store_true", help="switch: a socket ping-pong instead of sleep(0)")
    args = parser.parse_args()
    finish(measure_spawn(args) if args.measure == "spawn" else measure_switch(args))


if __name__ == "__main__":
    main()
