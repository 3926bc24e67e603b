"""The context-propagation program: cost of ``gevent.spawn`` with the greenlet instrumentor on and off.

Inside an active span, a batch spawns ``--greenlets`` greenlets (each reads
the current span) and joins them; the figure is the process CPU time of the
window divided by the number of greenlets, in microseconds. ``GeventInstrumentor`` is turned on
and off between batches, rotating which state goes first. Also reports the
share of children that saw the parent span, per state.
"""

from __future__ import annotations

import argparse

from appkit import ensure_patched, finish


def main() -> None:
    ensure_patched()
    import gc
    import time

    import gevent
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    parser = argparse.ArgumentParser()
    parser.add_argument("--greenlets", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    try:
        from otel_gevent_distro.instrumentation import GeventInstrumentor
    except ImportError as exc:
        finish({"unavailable": f"otel_gevent_distro.instrumentation.GeventInstrumentor: {exc}"})
        return

    trace.set_tracer_provider(TracerProvider())
    tracer = trace.get_tracer("bench.spawn_context")
    instrumentor = GeventInstrumentor()

    def switch(state: str) -> None:
        on = instrumentor.is_instrumented_by_opentelemetry
        if state == "on" and not on:
            instrumentor.instrument()
        elif state == "off" and on:
            instrumentor.uninstrument()

    def batch() -> tuple[float, float]:
        seen = []
        with tracer.start_as_current_span("parent") as parent:
            expected = parent.get_span_context().span_id

            def child() -> None:
                seen.append(trace.get_current_span().get_span_context().span_id == expected)

            gc.collect()
            start = time.process_time()
            gevent.joinall([gevent.spawn(child) for _ in range(args.greenlets)])
            elapsed = time.process_time() - start
        return elapsed / args.greenlets * 1e6, sum(seen) / max(1, len(seen))

    states = ["off", "on"]
    samples: dict[str, list[float]] = {state: [] for state in states}
    propagated: dict[str, float] = {}
    for state in states:  # warm-up
        switch(state)
        batch()
    for number in range(args.rounds):
        order = states if number % 2 == 0 else states[::-1]
        for state in order:
            switch(state)
            cost, share = batch()
            samples[state].append(cost)
            propagated[state] = share
    switch("off")
    finish({"us_per_spawn": samples, "propagated": propagated})


if __name__ == "__main__":
    main()
