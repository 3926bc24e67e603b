"""The subprocess-rate program: ``subprocess.run(["true"])`` in a loop, one span each.

Runs for ``--seconds`` or ``--max`` calls, whichever ends first, after a few
warm-up calls, and prints as one JSON line the calls per second and the CPU
time per call (this process and its children: the fork, the at-fork hooks,
the child up to and after ``exec``), the steadier figure on a busy machine.

Then it goes idle: it flushes the spans still queued, waits half a second,
sleeps ``--idle`` seconds on the hub and reports the process CPU time of that
window as a percentage of one core. Every export pipeline has started by then (spans and a counter were
made), so a background worker that wakes far more often than its schedule
shows at once.
"""

from __future__ import annotations

import argparse

from appkit import ensure_patched, finish, telemetry_facts


def main() -> None:
    ensure_patched()
    import os
    import subprocess
    import time

    import gevent
    from opentelemetry import metrics, trace

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--max", type=int, default=20000)
    parser.add_argument("--idle", type=float, default=1.0, help="seconds of the idle window after the loop")
    args = parser.parse_args()

    tracer = trace.get_tracer("bench.subprocess")
    counter = metrics.get_meter("bench.subprocess").create_counter("bench.subprocess.calls")
    for _ in range(3):
        subprocess.run(["true"], check=True)
    calls = 0
    before = os.times()
    start = time.perf_counter()
    deadline = start + args.seconds
    while calls < args.max and time.perf_counter() < deadline:
        with tracer.start_as_current_span("spawn"):
            subprocess.run(["true"], check=True)
        counter.add(1)
        calls += 1
    elapsed = time.perf_counter() - start
    after = os.times()
    cpu = sum(after[i] - before[i] for i in range(4))  # user, system, children's user, children's system
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush()  # what the loop queued is exported now, not inside the idle window
    gevent.sleep(0.5)
    idle_before = time.process_time()
    gevent.sleep(args.idle)
    idle_cpu = time.process_time() - idle_before
    finish(
        {
            "per_s": calls / elapsed,
            "cpu_ms_per_call": cpu / max(1, calls) * 1e3,
            "idle_cpu_percent": 100.0 * idle_cpu / args.idle,
            "calls": calls,
            "elapsed_s": elapsed,
            **telemetry_facts(),
        }
    )


if __name__ == "__main__":
    main()
