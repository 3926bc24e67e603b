"""The hub-stall program: one greenlet ticks every 1 ms while another makes spans.

Spans are made evenly over ``--seconds`` (``--spans`` in all, at most two
5 ms slots' worth at a time, so a starved producer falls behind rather than
stalling the hub itself; ``spans`` in the output says how many were made);
the ticker runs for that long plus ``--tail`` seconds.

Prints one JSON line: the longest and the p99 gap between ticks, in
milliseconds; the longest gap once the garbage collector's pauses inside it
are taken out (a full collection of a large heap stops the hub too,
telemetry or not); the five worst gaps and the longest collection. A hub
frozen by a blocking export shows as one long gap, recorded when the ticker
wakes up again.
"""

from __future__ import annotations

import argparse

from appkit import ensure_patched, finish, percentile, telemetry_facts


def _without_gc(gaps: list[float], ends: list[float], pauses: list[tuple[float, float]]) -> list[float]:
    """Each gap minus the garbage-collector time inside it (both lists are in time order)."""
    result = []
    first = 0
    for gap, end in zip(gaps, ends, strict=True):
        begin = end - gap
        while first < len(pauses) and pauses[first][1] <= begin:
            first += 1
        inside = 0.0
        index = first
        while index < len(pauses) and pauses[index][0] < end:
            inside += min(end, pauses[index][1]) - max(begin, pauses[index][0])
            index += 1
        result.append(gap - inside)
    return result


def main() -> None:
    ensure_patched()
    import gc
    import time

    import gevent
    from opentelemetry import trace

    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--tail", type=float, default=0.5)
    args = parser.parse_args()

    tracer = trace.get_tracer("bench.hub_stall")
    collections: list[tuple[int, float, float]] = []
    began: list[float] = []

    def on_gc(phase: str, info: dict) -> None:
        # Garbage collector pauses also stop the hub: recorded to tell them apart.
        if phase == "start":
            began[:] = [time.perf_counter()]
        elif began:
            collections.append((info["generation"], began[0], time.perf_counter() - began[0]))

    gc.callbacks.append(on_gc)
    gaps: list[float] = []
    ends: list[float] = []
    made = 0

    burst = max(1, round(args.spans / args.seconds * 0.005 * 2))

    def produce() -> None:
        # Every 5 ms, make the spans now due, but never more than two wake-ups'
        # worth at once: after a stall the producer stays behind instead of
        # holding the hub with a catch-up burst of its own.
        nonlocal made
        start = time.perf_counter()
        while made < args.spans and time.perf_counter() - start < args.seconds:
            due = min(args.spans, int(args.spans * (time.perf_counter() - start) / args.seconds) + 1)
            for _ in range(min(burst, due - made)):
                with tracer.start_as_current_span("work", attributes={"n": made}):
                    pass
                made += 1
            gevent.sleep(0.005)

    def tick(until: float) -> None:
        last = time.perf_counter()
        while True:
            gevent.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            ends.append(now)
            last = now
            if now >= until:
                return

    start = time.perf_counter()
    ticker = gevent.spawn(tick, start + args.seconds + args.tail)
    producer = gevent.spawn(produce)
    gevent.joinall([producer, ticker], timeout=args.seconds + args.tail + 120)
    gc.callbacks.remove(on_gc)
    longest_gc = max(collections, key=lambda c: c[2], default=(0, start, 0.0))
    outside_gc = _without_gc(gaps, ends, [(c[1], c[1] + c[2]) for c in collections])
    finish(
        {
            "max_ms": max(gaps, default=0.0) * 1e3,
            "p99_ms": percentile(gaps, 0.99) * 1e3,
            "ticks": len(gaps),
            "worst": [
                {"at_s": round(ends[i] - start, 3), "gap_ms": round(gaps[i] * 1e3, 1)}
                for i in sorted(range(len(gaps)), key=gaps.__getitem__)[-5:][::-1]
            ],
            "max_outside_gc_ms": max(outside_gc, default=0.0) * 1e3,
            "spans": made,
            "gc_longest": {
                "generation": longest_gc[0],
                "at_s": round(longest_gc[1] - start, 3),
                "ms": longest_gc[2] * 1e3,
            },
            "gc_full_collections": sum(1 for c in collections if c[0] == 2),
            "elapsed_s": time.perf_counter() - start,
            **telemetry_facts(),
        }
    )


if __name__ == "__main__":
    main()
