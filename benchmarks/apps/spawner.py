"""The subprocess-rate program: ``subprocess.run(["true"])`` in a loop, one span each.

Runs for ``--seconds`` or ``--max`` calls, whichever ends first, after a few
warm-up calls, and prints the calls per second as one JSON line.
"""

from __future__ import annotations

import argparse

from appkit import ensure_patched, finish, telemetry_facts


def main() -> None:
    ensure_patched()
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
    start = time.perf_counter()
    deadline = start + args.seconds
    while calls < args.max and time.perf_counter() < deadline:
        with tracer.start_as_current_span("spawn"):
            subprocess.run(["true"], check=True)
        calls += 1
    elapsed = time.perf_counter() - start
    finish({"per_s": calls / elapsed, "calls": calls, "elapsed_s": elapsed, **telemetry_facts()})


if __name__ == "__main__":
    main()
