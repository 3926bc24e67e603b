"""The OTLP test receiver, driven by the real OpenTelemetry SDK exporters."""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
from opentelemetry._logs import SeverityNumber
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as GrpcLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as HttpLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.receiver import BlackHole, OtlpReceiver, ReceivedSpan, Transport

ROOT = Path(__file__).resolve().parents[1]
RESOURCE = Resource.create({"service.name": "receiver-test", "deployment.environment": "test"})
PROTO_SPAN_KIND_SERVER = 2
PROTO_STATUS_ERROR = 2


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


@pytest.fixture(params=["http", "grpc"])
def transport(request: pytest.FixtureRequest) -> Transport:
    return cast(Transport, request.param)


def span_exporter(transport: Transport, receiver: OtlpReceiver, **options: Any) -> SpanExporter:
    if transport == "http":
        return HttpSpanExporter(endpoint=receiver.http_url("spans"), **options)
    return GrpcSpanExporter(endpoint=receiver.grpc_endpoint, insecure=True, **options)


def tracer_provider(exporter: SpanExporter) -> TracerProvider:
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def export_one_span(exporter: SpanExporter, name: str = "one") -> None:
    provider = tracer_provider(exporter)
    try:
        with provider.get_tracer("receiver-tests").start_as_current_span(name):
            pass
    finally:
        provider.shutdown()


def export_result(exporter: SpanExporter) -> SpanExportResult:
    """Export one finished span directly, returning the exporter's verdict."""
    captured: list[Any] = []

    class Capture(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            captured.extend(spans)
            return SpanExportResult.SUCCESS

    export_one_span(Capture())
    try:
        return exporter.export(captured)
    finally:
        exporter.shutdown()


def otlp_free_environment() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --------------------------------------------------------------------------
# Traces, metrics and logs over both transports
# --------------------------------------------------------------------------


def test_spans_arrive_decoded_with_parent_links_and_attributes(receiver: OtlpReceiver, transport: Transport) -> None:
    provider = tracer_provider(span_exporter(transport, receiver))
    tracer = provider.get_tracer("receiver-tests")
    try:
        with tracer.start_as_current_span("linked") as linked:
            pass
        attributes: dict[str, Any] = {
            "http.route": "/users",
            "retries": 3,
            "ratio": 0.5,
            "cached": True,
            "tags": ["a", "b"],
        }
        with (
            tracer.start_as_current_span("parent", kind=SpanKind.SERVER, attributes=attributes) as parent,
            tracer.start_as_current_span("child", links=[Link(linked.get_span_context())]) as child,
        ):
            child.add_event("cache-miss")
            child.set_status(Status(StatusCode.ERROR, "boom"))
    finally:
        provider.shutdown()

    spans = {span.name: span for span in receiver.wait_for(3)}
    parent_id = f"{parent.get_span_context().span_id:016x}"
    assert spans["parent"].span_id == parent_id
    assert spans["parent"].parent_span_id == ""
    assert spans["parent"].trace_id == f"{parent.get_span_context().trace_id:032x}"
    assert spans["parent"].kind == PROTO_SPAN_KIND_SERVER
    assert spans["parent"].attributes == attributes
    assert spans["child"].parent_span_id == parent_id
    assert spans["child"].trace_id == spans["parent"].trace_id
    assert spans["child"].links == [(spans["linked"].trace_id, spans["linked"].span_id)]
    assert spans["child"].events == ["cache-miss"]
    assert (spans["child"].status_code, spans["child"].status_message) == (PROTO_STATUS_ERROR, "boom")
    for span in spans.values():
        assert span.transport == transport
        assert span.scope == "receiver-tests"
        assert span.resource["service.name"] == "receiver-test"
    assert receiver.requests["spans"][transport] == 3
    assert receiver.counts()[transport]["spans"] == 3


def test_metrics_arrive_as_sum_gauge_and_histogram(receiver: OtlpReceiver, transport: Transport) -> None:
    exporter = (
        HttpMetricExporter(endpoint=receiver.http_url("metrics"))
        if transport == "http"
        else GrpcMetricExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(resource=RESOURCE, metric_readers=[reader])
    meter = provider.get_meter("receiver-tests")

    def observe_queue(options: CallbackOptions) -> list[Observation]:
        return [Observation(7, {"queue": "default"})]

    try:
        counter = meter.create_counter("jobs.done", unit="{job}")
        counter.add(3, {"route": "/a"})
        counter.add(2, {"route": "/a"})
        meter.create_histogram("job.duration", unit="ms").record(5.0)
        meter.create_histogram("job.duration", unit="ms").record(15.0)
        meter.create_observable_gauge("queue.depth", callbacks=[observe_queue])
        assert provider.force_flush()
    finally:
        provider.shutdown()

    metrics = {metric.name: metric for metric in receiver.wait_for(3, signal="metrics")}
    assert metrics["jobs.done"].kind == "sum"
    assert metrics["jobs.done"].is_monotonic is True
    assert metrics["jobs.done"].unit == "{job}"
    assert metrics["jobs.done"].data_points[0]["value"] == 5
    assert metrics["jobs.done"].data_points[0]["attributes"] == {"route": "/a"}
    histogram = metrics["job.duration"].data_points[0]
    assert metrics["job.duration"].kind == "histogram"
    assert (histogram["count"], histogram["sum"], histogram["min"], histogram["max"]) == (2, 20.0, 5.0, 15.0)
    assert sum(histogram["bucket_counts"]) == 2
    assert metrics["queue.depth"].kind == "gauge"
    assert metrics["queue.depth"].data_points[0] == {**metrics["queue.depth"].data_points[0], "value": 7}
    assert all(metric.transport == transport for metric in metrics.values())
    assert metrics["queue.depth"].resource["service.name"] == "receiver-test"
    assert receiver.metric_points("jobs.done")[0]["value"] == 5


def test_logs_arrive_with_body_severity_and_trace_context(receiver: OtlpReceiver, transport: Transport) -> None:
    exporter = (
        HttpLogExporter(endpoint=receiver.http_url("logs"))
        if transport == "http"
        else GrpcLogExporter(endpoint=receiver.grpc_endpoint, insecure=True)
    )
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    tracer = TracerProvider(resource=RESOURCE).get_tracer("receiver-tests")
    try:
        with tracer.start_as_current_span("request") as span:
            logger_provider.get_logger("receiver-tests").emit(
                body={"message": "disk almost full", "free": [1, 2.5]},
                severity_text="WARN",
                severity_number=SeverityNumber.WARN,
                attributes={"disk": "/dev/sda"},
            )
    finally:
        logger_provider.shutdown()

    (log,) = receiver.wait_for(1, signal="logs")
    assert log.body == {"message": "disk almost full", "free": [1, 2.5]}
    assert (log.severity_text, log.severity_number) == ("WARN", SeverityNumber.WARN.value)
    assert log.attributes == {"disk": "/dev/sda"}
    assert log.trace_id == f"{span.get_span_context().trace_id:032x}"
    assert log.span_id == f"{span.get_span_context().span_id:016x}"
    assert (log.scope, log.transport) == ("receiver-tests", transport)
    assert log.resource["service.name"] == "receiver-test"


@pytest.mark.parametrize("compression", [HttpCompression.Gzip, HttpCompression.Deflate])
def test_http_compressed_exports_are_decoded(receiver: OtlpReceiver, compression: HttpCompression) -> None:
    export_one_span(HttpSpanExporter(endpoint=receiver.http_url("spans"), compression=compression), "packed")

    assert [span.name for span in receiver.wait_for(1)] == ["packed"]
    (record,) = receiver.request_log()
    assert record.encoding == compression.value
    assert record.content_type == "application/x-protobuf"


def test_grpc_gzip_exports_are_decoded(receiver: OtlpReceiver) -> None:
    export_one_span(span_exporter("grpc", receiver, compression=grpc.Compression.Gzip), "packed")

    assert [span.name for span in receiver.wait_for(1)] == ["packed"]


def test_exporters_configured_only_by_env_reach_the_receiver(
    receiver: OtlpReceiver, transport: Transport, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [key for key in os.environ if key.startswith("OTEL_EXPORTER_OTLP")]:
        monkeypatch.delenv(key)
    protocol = "grpc" if transport == "grpc" else "http/protobuf"
    for key, value in receiver.env(protocol).items():
        monkeypatch.setenv(key, value)

    export_one_span(GrpcSpanExporter() if transport == "grpc" else HttpSpanExporter(), "from-env")

    assert [(span.name, span.transport) for span in receiver.wait_for(1)] == [("from-env", transport)]


def test_env_names_endpoint_protocol_and_insecure(receiver: OtlpReceiver) -> None:
    assert receiver.env("http/protobuf") == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    }
    assert receiver.env("grpc") == {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
    }
    with pytest.raises(ValueError, match="unknown OTLP protocol"):
        receiver.env("carrier-pigeon")


# --------------------------------------------------------------------------
# Plain HTTP: JSON bodies and bad requests
# --------------------------------------------------------------------------


def post(url: str, body: bytes, content_type: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_json_export_over_http_is_decoded(receiver: OtlpReceiver) -> None:
    trace_id, span_id, parent_id = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174", "eee19b7ec3c1b173"
    span = {
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent_id,
        "name": "json-span",
        "kind": 2,
        "attributes": [{"key": "n", "value": {"intValue": "7"}}],
    }
    payload = {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [{"scope": {"name": "json-scope"}, "spans": [span]}],
            }
        ]
    }

    status, body = post(receiver.http_url("spans"), json.dumps(payload).encode(), "application/json")

    assert (status, json.loads(body)) == (200, {})
    (received,) = receiver.wait_for(1)
    assert (received.trace_id, received.span_id, received.parent_span_id) == (trace_id, span_id, parent_id)
    assert (received.name, received.kind, received.attributes) == ("json-span", 2, {"n": 7})
    assert (received.scope, received.resource) == ("json-scope", {"service.name": "json-svc"})


def test_http_rejects_unknown_paths_media_types_and_garbage(receiver: OtlpReceiver) -> None:
    assert post(receiver.http_endpoint + "/v1/profiles", b"", "application/x-protobuf")[0] == 404
    assert post(receiver.http_url("spans"), b"<xml/>", "application/xml")[0] == 415
    assert post(receiver.http_url("spans"), b"\xff\xff\xff", "application/x-protobuf")[0] == 400
    assert receiver.spans() == []


# --------------------------------------------------------------------------
# Slow and failing collector emulation
# --------------------------------------------------------------------------


def test_transient_errors_are_retried_then_accepted(receiver: OtlpReceiver, transport: Transport) -> None:
    receiver.configure(status=503, fail_times=1, retry_after_s=0)

    export_one_span(span_exporter(transport, receiver), "retried")

    assert [span.name for span in receiver.wait_for(1)] == ["retried"]
    assert [record.status for record in receiver.request_log()] == [503, 200]
    assert receiver.requests["spans"][transport] == 2


def test_permanent_errors_fail_the_export_and_store_nothing(receiver: OtlpReceiver, transport: Transport) -> None:
    receiver.configure(status=400)

    assert export_result(span_exporter(transport, receiver)) is SpanExportResult.FAILURE

    assert receiver.spans() == []
    assert [(record.status, record.items) for record in receiver.request_log()] == [(400, 1)]
    assert receiver.counts()[transport] == {"spans": 0, "logs": 0, "metric_points": 0, "requests": 1}


def test_delay_holds_back_every_answer(receiver: OtlpReceiver, transport: Transport) -> None:
    receiver.configure(delay_s=0.3)

    started = time.monotonic()
    assert export_result(span_exporter(transport, receiver)) is SpanExportResult.SUCCESS

    assert time.monotonic() - started >= 0.3
    assert len(receiver.wait_for(1)) == 1


def test_reset_restores_default_behaviour(receiver: OtlpReceiver) -> None:
    receiver.configure(status=503, delay_s=1.0)

    receiver.reset()

    assert receiver.behavior.status == 200
    assert receiver.behavior.delay_s == 0.0


# --------------------------------------------------------------------------
# wait_for
# --------------------------------------------------------------------------


def test_wait_for_predicate_returns_only_matches(receiver: OtlpReceiver) -> None:
    provider = tracer_provider(span_exporter("http", receiver))
    try:
        for name in ("noise", "wanted", "noise"):
            with provider.get_tracer("receiver-tests").start_as_current_span(name):
                pass
    finally:
        provider.shutdown()

    def is_wanted(span: ReceivedSpan) -> bool:
        return span.name == "wanted"

    assert [span.name for span in receiver.wait_for(is_wanted)] == ["wanted"]
    assert len(receiver.wait_for(is_wanted, min_matches=1, timeout=0.1)) == 1


def test_wait_for_timeout_lists_what_arrived(receiver: OtlpReceiver) -> None:
    export_one_span(span_exporter("http", receiver), "lonely")
    receiver.wait_for(1)

    with pytest.raises(AssertionError) as failure:
        receiver.wait_for(2, timeout=0.2)

    message = str(failure.value)
    assert "waiting for 2 spans" in message
    assert "span 'lonely' (http)" in message
    with pytest.raises(AssertionError, match="0 logs arrived"):
        receiver.wait_for(1, signal="logs", timeout=0.1)


# --------------------------------------------------------------------------
# Black hole
# --------------------------------------------------------------------------


def test_blackhole_accepts_connections_and_never_answers(blackhole: BlackHole) -> None:
    with socket.create_connection(("127.0.0.1", blackhole.port), timeout=5) as client:
        wait_until(lambda: blackhole.accepted == 1)
        client.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        client.settimeout(0.3)
        with pytest.raises(socket.timeout):
            client.recv(1)


def test_http_exporter_times_out_against_blackhole(blackhole: BlackHole) -> None:
    exporter = HttpSpanExporter(endpoint=blackhole.endpoint + "/v1/traces", timeout=1)

    started = time.monotonic()
    assert export_result(exporter) is SpanExportResult.FAILURE

    assert time.monotonic() - started < 30
    assert blackhole.accepted >= 1


def test_grpc_exporter_times_out_against_blackhole(blackhole: BlackHole) -> None:
    exporter = GrpcSpanExporter(endpoint=blackhole.endpoint, insecure=True, timeout=1)

    assert export_result(exporter) is SpanExportResult.FAILURE

    assert blackhole.accepted >= 1


# --------------------------------------------------------------------------
# Lifecycle and command line
# --------------------------------------------------------------------------


def test_close_stops_both_servers() -> None:
    receiver = OtlpReceiver()
    ports = [int(endpoint.rsplit(":", 1)[1]) for endpoint in (receiver.http_endpoint, receiver.grpc_endpoint)]

    receiver.close()
    receiver.close()

    for port in ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python -m tests.receiver`` and make sure it is gone afterwards."""
    processes: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.receiver", *args],
            cwd=ROOT,
            env=otlp_free_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def read_json_line(process: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, Any]:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output within {timeout}s"
    line = process.stdout.readline()
    assert line, f"process exited early with {process.wait(timeout)}"
    return dict(json.loads(line))


def test_cli_receives_from_both_transports_and_summarises_on_sigterm(
    spawn: Callable[..., subprocess.Popen[str]],
) -> None:
    process = spawn("--summary")
    endpoints = read_json_line(process)

    export_one_span(HttpSpanExporter(endpoint=endpoints["http"] + "/v1/traces"), "over-http")
    export_one_span(GrpcSpanExporter(endpoint=endpoints["grpc"], insecure=True), "over-grpc")
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)

    assert process.returncode == 0, err
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert summary["http"] == {"spans": 1, "logs": 0, "metric_points": 0, "requests": 1}
    assert summary["grpc"] == {"spans": 1, "logs": 0, "metric_points": 0, "requests": 1}


def test_cli_blackhole_exits_when_stdin_closes(spawn: Callable[..., subprocess.Popen[str]]) -> None:
    process = spawn("--mode", "blackhole", "--summary")
    port = int(read_json_line(process)["endpoint"].rsplit(":", 1)[1])

    with socket.create_connection(("127.0.0.1", port), timeout=5):
        out, err = process.communicate(timeout=30)  # closes stdin first

    assert process.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == {"summary": {"accepted": 1}}
