"""The idle program: the CPU a patched process uses while its greenlets only sleep.

It makes one span and adds to one counter (so the export pipelines have
started), flushes the spans, prints ``ready`` and waits, on the hub, for a
line or the end of its stdin: the launcher starts every contender of a round
this way and lets them all go at once, so their idle windows are the same
seconds of the machine. Then it sleeps ``--warmup`` seconds, measures its
own ``time.process_time()`` (every thread of the process) across
``--window`` seconds of ``gevent.sleep`` and prints it per second of the
window (milliseconds, and as a percentage of one core), with the process's
OS threads and whether gevent's monitor thread runs.
"""

from __future__ import annotations

import argparse

from appkit import ensure_patched, finish, telemetry_facts


def main() -> None:
    ensure_patched()
    import os
    import sys
    import time

    import gevent
    from gevent.socket import wait_read
    from opentelemetry import metrics, trace

    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=20.0, help="seconds of the measured idle window")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds slept before the window")
    args = parser.parse_args()

    with trace.get_tracer("bench.idle").start_as_current_span("start"):
        pass
    metrics.get_meter("bench.idle").create_counter("bench.idle.starts").add(1)
    flush = getattr(trace.get_tracer_provider(), "force_flush", None)
    if flush is not None:
        flush()
    started = time.perf_counter()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    wait_read(sys.stdin.fileno(), timeout=600)  # the launcher's go: a line, or stdin closed
    waited = time.perf_counter() - started
    gevent.sleep(args.warmup)
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    gevent.sleep(args.window)
    cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
    monitor = gevent.get_hub().periodic_monitoring_thread
    finish(
        {
            "cpu_ms_per_s": 1000.0 * cpu / wall,
            "idle_cpu_percent": 100.0 * cpu / wall,
            "cpu_s": cpu,
            "window_s": wall,
            "waited_for_go_s": waited,
            "os_threads": len(os.listdir("/proc/self/task")),
            "monitor_thread": bool(monitor is not None and getattr(monitor, "should_run", False)),
            "max_blocking_time": gevent.config.max_blocking_time,
            **telemetry_facts(),
        }
    )


if __name__ == "__main__":
    main()
