"""Row 7, OTLP encoding: CPU per span and per log record, upstream's encoder beside the distro's.

Builds the same spans for both (server-like: 10 attributes, 2 events, a
remote parent, one resource and scope) and the same log records (a string
body, 5 attributes, trace context), in batches of 512 as the batch
processors hand them over, and measures the process CPU time of encoding
them all to bytes: ``encode_spans(batch).SerializeToString()`` from
``opentelemetry-exporter-otlp-proto-common`` (column ``stock``) and
``otel_gevent_distro.export.otlp_encoding`` (column ``ours``), alternating
which goes first, round after round. Both outputs are checked to parse to
the same message before anything is timed.

    python benchmarks/encode_cost.py            # the rows alone (BENCH_QUICK=1 works too)
    python benchmarks/encode_cost.py --measure  # the measurement, one JSON line, in this process

The measurement runs in a child process (``--measure``) so that run.py's own
process never imports the distro.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from typing import Any

from harness import (
    BENCH_DIR,
    NONE,
    OURS,
    PYTHON,
    STOCK,
    Bench,
    Row,
    Target,
    launch,
    log,
    main_single,
    run_child,
)

SPANS_NAME = "OTLP encode, server spans (10 attributes, 2 events)"
LOGS_NAME = "OTLP encode, log records (5 attributes)"
BATCH = 512
TRACE_ID = 0x5B8EFFF798038103D269B633813FC60C
SPAN_ID = 0xEEE19B7EC3C1B174


def run(bench: Bench) -> list[Row]:
    rounds = bench.pick(3, 15)
    count = bench.pick(2048, 8192)
    program = [PYTHON, str(BENCH_DIR / "encode_cost.py"), "--measure", "--rounds", str(rounds), "--count", str(count)]
    command, env = launch(NONE, program)
    log(f"encode cost: {rounds} rounds of {count} spans and {count} log records in one process")
    specs = [
        ("spans", SPANS_NAME, "CPU us/span", Target("ratio<=", 0.25)),
        ("logs", LOGS_NAME, "CPU us/record", Target("info")),
    ]
    try:
        result = run_child(command, env, timeout=600, cwd=BENCH_DIR).last_json()
    except Exception as exc:  # noqa: BLE001 - report the rows as failed, go on with the others
        return [
            Row(name=name, unit=unit, target=target, errors=[f"{type(exc).__name__}: {exc}"])
            for _, name, unit, target in specs
        ]
    notes = {
        "count": count,
        "batch": BATCH,
        "rounds": rounds,
        "columns": "stock=upstream's encoder, ours=the distro's",
        "protobuf": result.get("protobuf"),
    }
    return [
        Row(name=name, unit=unit, target=target, samples=result[key], notes={**notes, "bytes": result["bytes"][key]})
        for key, name, unit, target in specs
    ]


# --------------------------------------------------------------------------
# The measurement (child process)
# --------------------------------------------------------------------------


def make_spans(count: int) -> list[Any]:
    """``count`` finished server-like spans from the SDK, with a remote parent each."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, set_span_in_context

    exporter = InMemorySpanExporter()
    resource = Resource.create({"service.name": "bench", "service.version": "1.2.3", "deployment.environment": "prod"})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("opentelemetry.instrumentation.flask", "0.66b1")
    for number in range(count):
        parent = SpanContext(
            0x5B8EFFF798038103D269B633813FC60C + number, 0xEEE19B7EC3C1B174 + number, True, TraceFlags(1)
        )
        with tracer.start_as_current_span(
            "GET /users/<user_id>",
            context=set_span_in_context(NonRecordingSpan(parent)),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": "GET",
                "url.scheme": "http",
                "url.path": f"/users/{number}",
                "http.route": "/users/<user_id>",
                "server.address": "127.0.0.1",
                "server.port": 8000,
                "client.address": "10.0.0.12",
                "user_agent.original": "python-requests/2.32.3",
                "network.protocol.version": "1.1",
                "http.response.status_code": 200,
            },
        ) as span:
            span.add_event("cache.miss", {"cache.key": f"user:{number}", "cache.ttl": 30})
            span.add_event("db.query", {"db.rows": 1})
    return list(exporter.get_finished_spans())


def make_logs(count: int) -> list[Any]:
    """``count`` log records as the SDK hands them to a log exporter, with trace context."""
    from opentelemetry._logs import SeverityNumber
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    try:
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as Memory
    except ImportError:  # older SDKs
        from opentelemetry.sdk._logs.export import InMemoryLogExporter as Memory  # type: ignore[no-redef]

    exporter = Memory()
    provider = LoggerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("app.users", "1.0")
    for number in range(count):
        context = set_span_in_context(
            NonRecordingSpan(
                SpanContext(0x5B8EFFF798038103D269B633813FC60C + number, 0xEEE19B7EC3C1B174, False, TraceFlags(1))
            )
        )
        logger.emit(
            body=f"user {number} fetched in 3 ms",
            severity_number=SeverityNumber.INFO,
            severity_text="INFO",
            context=context,
            attributes={
                "code.function": "get_user",
                "code.lineno": 42,
                "user.id": number,
                "cache.hit": False,
                "db.ms": 2.5,
            },
        )
    return list(exporter.get_finished_logs())


def measure(rounds: int, count: int) -> dict[str, Any]:
    from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as upstream_logs
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as upstream_spans
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    from otel_gevent_distro.export.otlp_encoding import encode_logs, encode_spans

    signals = {
        "spans": (make_spans(count), upstream_spans, encode_spans, ExportTraceServiceRequest),
        "logs": (make_logs(count), upstream_logs, encode_logs, ExportLogsServiceRequest),
    }
    samples: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, dict[str, int]] = {}
    for signal, (items, upstream, ours, message) in signals.items():
        batches = [items[i : i + BATCH] for i in range(0, len(items), BATCH)]
        encoders = {STOCK: lambda batch, up=upstream: up(batch).SerializeToString(), OURS: ours}
        outputs = {name: encode(batches[0]) for name, encode in encoders.items()}
        if message.FromString(outputs[STOCK]) != message.FromString(outputs[OURS]):
            raise SystemExit(f"{signal}: the two encoders disagree; nothing measured")
        sizes[signal] = {name: len(data) for name, data in outputs.items()}
        samples[signal] = {STOCK: [], OURS: []}
        order = [STOCK, OURS]
        for number in range(rounds + 1):  # round 0 warms up
            for name in order if number % 2 else order[::-1]:
                encode = encoders[name]
                gc.collect()
                start = time.process_time()
                for batch in batches:
                    encode(batch)
                elapsed = time.process_time() - start
                if number:
                    samples[signal][name].append(elapsed / len(items) * 1e6)
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation

    protobuf = f"protobuf {protobuf_version} ({api_implementation.Type()})"
    return {**samples, "bytes": sizes, "protobuf": protobuf}


def print_side_by_side(result: dict[str, Any]) -> None:
    """Stderr: upstream, distro and ratio per signal (medians)."""
    import statistics

    for signal in ("spans", "logs"):
        upstream, ours = (statistics.median(result[signal][name]) for name in (STOCK, OURS))
        print(
            f"{signal}: upstream {upstream:.2f} us/item, distro {ours:.2f} us/item, ratio {ours / upstream:.3f}",
            file=sys.stderr,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", action="store_true", help="measure in this process, print one JSON line")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--count", type=int, default=8192)
    args = parser.parse_args()
    if not args.measure:
        main_single(run)
        return
    result = measure(args.rounds, args.count)
    print_side_by_side(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
