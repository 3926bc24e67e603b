"""The span-overhead program: cost of start+end of a span on a greenlet, in process.

One patched process builds one ``TracerProvider`` per contender and measures
them in turn, round after round (who goes first rotates):

* ``none``: the SDK with no span processor;
* ``stock``: the SDK's ``BatchSpanProcessor``;
* ``ours``: the distro's ``GeventBatchSpanProcessor`` (skipped when the
  distro does not provide it yet).

Each span carries ten attributes, like a web framework's server span; for
``ours`` the OTLP/HTTP exporter is the distro's own, as the distro installs it.
A batch is ``--spans`` spans (default 2000, below the default queue size of
2048, so no processor can drop any) made with ``start_as_current_span`` on one
greenlet that yields to the hub every 8 spans (as a request doing I/O would,
which lets a greenlet worker run), followed by ``force_flush()``, so the
export work a batch causes is paid inside its own window. The figure is the
process CPU time of the window (every thread: a worker thread's export
counts too) divided by the number of spans, in microseconds; CPU time is much
steadier than wall time on a shared machine. Wall time is reported beside it.

``--exporter memory`` counts spans in memory (processor cost only);
``--exporter otlp-http`` sends them to ``OTEL_EXPORTER_OTLP_ENDPOINT``.
"""

from __future__ import annotations

import argparse
from typing import Any

from appkit import ensure_patched, finish


def _exporter(kind: str, contender: str = "stock") -> Any:
    import os

    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class CountingExporter(SpanExporter):
        def __init__(self) -> None:
            self.count = 0

        def export(self, spans: Any) -> SpanExportResult:
            self.count += len(spans)
            return SpanExportResult.SUCCESS

    if kind == "memory":
        return CountingExporter()
    endpoint = os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if contender == "ours":
        # What the distro installs for otlp with http/protobuf: its own encoder and transport.
        from otel_gevent_distro.export.otlp_http import OtlpHttpSpanExporter

        return OtlpHttpSpanExporter(endpoint=endpoint)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def _processors(kind: str) -> tuple[dict[str, Any], str]:
    """Contender -> span processor (``none`` has none), and why ``ours`` is missing."""
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    processors: dict[str, Any] = {"none": None, "stock": BatchSpanProcessor(_exporter(kind))}
    try:
        from otel_gevent_distro.pipeline.span_processor import GeventBatchSpanProcessor
    except ImportError as exc:
        return processors, f"otel_gevent_distro.pipeline.span_processor.GeventBatchSpanProcessor: {exc}"
    processors["ours"] = GeventBatchSpanProcessor(_exporter(kind, "ours"))
    return processors, ""


def _counters(processor: Any) -> dict[str, Any]:
    """What reached the exporter, and what the processor dropped (when it counts drops)."""
    counters = {"exported": getattr(processor.span_exporter, "count", None)}
    for name in ("exported", "dropped"):
        if isinstance(getattr(processor, name, None), int):
            counters[name] = getattr(processor, name)
    return counters


def _server_attributes(number: int) -> dict[str, Any]:
    """Ten attributes, as a server span of an HTTP framework carries."""
    return {
        "http.request.method": "GET",
        "url.path": f"/items/{number}",
        "url.scheme": "http",
        "http.route": "/items/{id}",
        "http.response.status_code": 200,
        "server.address": "127.0.0.1",
        "server.port": 8000,
        "client.address": "127.0.0.1",
        "user_agent.original": "loadgen/1.0",
        "network.protocol.version": "1.1",
    }


def timed_spans(make_span: Any, flush: Any, spans: int) -> tuple[float, float]:
    """CPU and wall microseconds per span of one batch, made on a greenlet.

    ``make_span(number)`` makes and ends one span; the greenlet yields every
    eight spans, as a request path would; ``flush()`` ends the batch and is timed.
    """
    import gc
    import time

    import gevent

    def request_path() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        for number in range(spans):
            make_span(number)
            if number % 8 == 7:
                gevent.sleep(0)
        flush()
        return time.process_time() - cpu, time.perf_counter() - wall

    gc.collect()
    cpu, wall = gevent.spawn(request_path).get()
    return cpu / spans * 1e6, wall / spans * 1e6


def _batch(provider: Any, spans: int) -> tuple[float, float]:
    """CPU and wall microseconds per OpenTelemetry span of one batch (see :func:`timed_spans`)."""
    tracer = provider.get_tracer("bench.span_overhead")

    def make_span(number: int) -> None:
        with tracer.start_as_current_span("GET /items/{id}", attributes=_server_attributes(number)):
            pass

    return timed_spans(make_span, provider.force_flush, spans)


def main() -> None:
    ensure_patched()
    from opentelemetry.sdk.trace import TracerProvider

    parser = argparse.ArgumentParser()
    parser.add_argument("--exporter", choices=("memory", "otlp-http"), required=True)
    parser.add_argument("--spans", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    processors, unavailable = _processors(args.exporter)
    providers = {}
    for name, processor in processors.items():
        providers[name] = TracerProvider()
        if processor is not None:
            providers[name].add_span_processor(processor)

    names = list(providers)
    for name in names:  # warm-up
        _batch(providers[name], args.spans)
    cpu: dict[str, list[float]] = {name: [] for name in names}
    wall: dict[str, list[float]] = {name: [] for name in names}
    for number in range(args.rounds):
        shift = number % len(names)
        for name in names[shift:] + names[:shift]:
            cpu_us, wall_us = _batch(providers[name], args.spans)
            cpu[name].append(cpu_us)
            wall[name].append(wall_us)
    exported = {name: _counters(processor) for name, processor in processors.items() if processor is not None}
    for provider in providers.values():
        provider.shutdown()
    finish({"us_per_span": cpu, "wall_us_per_span": wall, "unavailable": unavailable, "exported": exported})


if __name__ == "__main__":
    main()
