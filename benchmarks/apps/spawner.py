"""The subprocess-rate program: ``subprocess.run(["true"])`` in a loop, one span each.

Runs for ``--seconds`` or ``--max`` calls, whichever ends first, after a few
warm-up calls, and prints as one JSON line the calls per second and the CPU
time per call (this process and its children: the fork, the at-fork hooks,
the child up to and after ``exec``), the steadier figure on a busy machine.
"""

from __future__ import annotations

import argparse

from appkit import ensure_patched, finish, telemetry_facts


def main() -> None:
    ensure_patched()
    import os
    import subprocess
    import time

    from opentelemetry import trace

    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--max", type=int, default=20000)
    args = parser.parse_args()

    tracer = trace.get_tracer("bench.subprocess")
    for _ in range(3):
        subprocess.run(["true"], check=True)
    calls = 0
    before = os.times()
    start = time.perf_counter()
    deadline = start + args.seconds
    while calls < args.max and time.perf_counter() < deadline:
        with tracer.start_as_current_span("spawn"):
            subprocess.run(["true"], check=True)
        calls += 1
    elapsed = time.perf_counter() - start
    after = os.times()
    cpu = sum(after[i] - before[i] for i in range(4))  # user, system, children's user, children's system
    finish(
        {
            "per_s": calls / elapsed,
            "cpu_ms_per_call": cpu / max(1, calls) * 1e3,
            "calls": calls,
            "elapsed_s": elapsed,
            **telemetry_facts(),
        }
    )


if __name__ == "__main__":
    main()
