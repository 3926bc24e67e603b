"""The idle-CPU program: emit a little telemetry, then do nothing and measure the CPU used.

Makes one span and one metric point (so every export pipeline has started),
waits half a second, then sleeps ``--seconds`` on the hub and prints the
process CPU time of that idle window as a percentage of one core.
"""

from __future__ import annotations

import argparse

from appkit import ensure_patched, finish, telemetry_facts


def main() -> None:
    ensure_patched()
    import os

    import gevent
    from opentelemetry import metrics, trace

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()

    with trace.get_tracer("bench.idle").start_as_current_span("one"):
        metrics.get_meter("bench.idle").create_counter("bench.idle.events").add(1)
    gevent.sleep(0.5)
    before = os.times()
    gevent.sleep(args.seconds)
    after = os.times()
    cpu = (after[0] - before[0]) + (after[1] - before[1])
    finish({"cpu_percent": 100.0 * cpu / args.seconds, **telemetry_facts()})


if __name__ == "__main__":
    main()
