"""The delivered-span program: process CPU per span made, ended, encoded and sent, for one contender.

One patched process (``gevent.monkey.patch_all()`` first, through
``appkit.ensure_patched``, as ``span_cost.py`` does) makes ``--spans``
server-like spans (ten attributes, ``span_cost._server_attributes``) on one
greenlet that yields to the hub every 8 spans, then flushes, and reports the
process CPU time (every thread) of that loop and the final flush, divided by
the number of spans. Before it, ``--warmup`` spans are made and flushed the
same way, unmeasured (first-use imports, the first connection).

``--contender``:

* ``stock``: the SDK's ``TracerProvider`` and ``BatchSpanProcessor`` with
  upstream's OTLP/HTTP exporter; the queue size comes from
  ``OTEL_BSP_MAX_QUEUE_SIZE`` (the benchmark makes it hold every span);
  flush: ``force_flush()``.
* ``ours``: the same with the distro's ``GeventBatchSpanProcessor`` and its
  OTLP/HTTP exporter (what the distro installs), exactly as ``span_cost.py``
  builds them.
* ``ddtrace``: dd-trace-py's global tracer; each span is ``tracer.trace(...)``
  with the same ten attributes, strings through ``set_tag`` and numbers
  through ``set_metric``; its agent writer sends to ``DD_TRACE_AGENT_URL``;
  flush: ``tracer.flush()`` (the writer encodes and sends in the caller).
  Run it with the interpreter of the environment that holds ``ddtrace``, under
  ``ddtrace-run``: dd-trace-py must be loaded before ``patch_all()`` (loaded
  after it, it warns that this is not supported, and the flush can end in
  gevent's ``LoopExit`` when the hub waits for a lock its writer's native
  thread holds), and ``ddtrace-run`` is its documented way to do that.
  ``ddtrace-run`` also turns on its integrations for what is installed
  there (nothing this loop calls).

The receiving process counts what arrived; this program reports what it
knows of drops. Half a second after the window it reads the CPU clock again
(``tail_cpu_us``): work a contender left running after its flush would show
there, not in the figure.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from appkit import ensure_patched, finish
from span_cost import _batch, _exporter, _server_attributes, timed_spans

SPAN_NAME = "GET /items/{id}"


def _otel_run(contender: str, spans: int, warmup: int) -> dict[str, Any]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporter = _exporter("otlp-http", contender)
    if contender == "ours":
        from otel_gevent_distro.pipeline.span_processor import GeventBatchSpanProcessor

        processor: Any = GeventBatchSpanProcessor(exporter)
    else:
        processor = BatchSpanProcessor(exporter)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    if warmup:
        _batch(provider, warmup)
    cpu_us, wall_us = _batch(provider, spans)
    facts = {
        "processor": type(processor).__name__,
        "exporter": type(exporter).__name__,
        "queue_size": _queue_size(processor),
    }
    for name in ("exported", "dropped", "failed"):
        if isinstance(getattr(processor, name, None), int):
            facts[name] = getattr(processor, name)
    return {"cpu_us": cpu_us, "wall_us": wall_us, **facts}


def _queue_size(processor: Any) -> Any:
    """The queue size each processor was built with (for the JSON)."""
    inner = getattr(processor, "_batch_processor", None)
    if inner is not None:
        return getattr(inner, "_max_queue_size", None)
    pipeline = getattr(processor, "_pipeline", None)
    return getattr(pipeline, "_max_queue_size", None)


def _ddtrace_batch(tracer: Any, spans: int) -> tuple[float, float]:
    """CPU and wall microseconds per dd-trace-py span of one batch (see ``span_cost.timed_spans``)."""

    def make_span(number: int) -> None:
        with tracer.trace(SPAN_NAME, resource=SPAN_NAME, span_type="web") as span:
            for key, value in _server_attributes(number).items():
                if isinstance(value, str):
                    span.set_tag(key, value)
                else:
                    span.set_metric(key, value)

    return timed_spans(make_span, tracer.flush, spans)


def _ddtrace_run(spans: int, warmup: int) -> dict[str, Any]:
    import ddtrace

    try:
        from ddtrace.trace import tracer
    except ImportError:  # dd-trace-py before 3.0
        from ddtrace import tracer  # type: ignore[attr-defined,no-redef]

    if warmup:
        _ddtrace_batch(tracer, warmup)
    cpu_us, wall_us = _ddtrace_batch(tracer, spans)
    writer = getattr(getattr(tracer, "_span_aggregator", None), "writer", None)
    return {
        "cpu_us": cpu_us,
        "wall_us": wall_us,
        "ddtrace": ddtrace.__version__,
        "writer": type(writer).__name__,
        "api_version": getattr(writer, "_api_version", None),
    }


def main() -> None:
    ddtrace_first = "ddtrace" in sys.modules  # under ddtrace-run: loaded before patch_all
    ensure_patched()
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender", choices=("stock", "ours", "ddtrace"), required=True)
    parser.add_argument("--spans", type=int, default=20000)
    parser.add_argument("--warmup", type=int, default=512)
    args = parser.parse_args()

    if args.contender == "ddtrace":
        result = {**_ddtrace_run(args.spans, args.warmup), "ddtrace_loaded_before_patch": ddtrace_first}
    else:
        result = _otel_run(args.contender, args.spans, args.warmup)
    after_window = time.process_time()
    time.sleep(0.5)
    result["tail_cpu_us"] = (time.process_time() - after_window) * 1e6
    result["made"] = args.spans + args.warmup
    finish(result)


if __name__ == "__main__":
    main()
