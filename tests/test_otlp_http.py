"""The distro's OTLP/HTTP exporter against a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.sdk import _configuration as sdk_configuration
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_gevent_distro.export import otlp_http
from otel_gevent_distro.export.otlp_http import (
    LOGS,
    TRACES,
    OtlpHttpLogExporter,
    OtlpHttpSpanExporter,
    parse_partial_success,
    proxy_variable,
    resolve_config,
    retry_after_seconds,
)
from otel_gevent_distro.export.selection import DISTRO_OTLP_HTTP, check_exporters
from tests.launch import run_app, write_app
from tests.receiver import BlackHole, OtlpReceiver

RESOURCE = Resource.create({"service.name": "otlp-http-test"})
DISTRO_AGENT = "otel-gevent-distro/"


@pytest.fixture(autouse=True)
def _no_otlp_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP"):
            monkeypatch.delenv(name)


def make_spans(count: int = 3, prefix: str = "span") -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("otlp-http-tests")
    for index in range(count):
        with tracer.start_as_current_span(f"{prefix}-{index}", attributes={"index": index}):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def make_logs(count: int = 2) -> list[Any]:
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(resource=RESOURCE)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    emitter = provider.get_logger("otlp-http-tests")
    for index in range(count):
        emitter.emit(body=f"line {index}", severity_number=SeverityNumber.WARN, severity_text="WARN")
    provider.shutdown()
    return list(memory.get_finished_logs())


def distro_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "otel_gevent_distro"]


@pytest.fixture
def spans_exporter(receiver: OtlpReceiver) -> Iterator[OtlpHttpSpanExporter]:
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"))
    yield exporter
    exporter.shutdown()


# --------------------------------------------------------------------------
# Delivery and the connection
# --------------------------------------------------------------------------


def test_spans_and_logs_arrive(receiver: OtlpReceiver, spans_exporter: OtlpHttpSpanExporter) -> None:
    assert spans_exporter.export(make_spans(3)) is SpanExportResult.SUCCESS
    logs = OtlpHttpLogExporter(endpoint=receiver.http_url("logs"))
    assert logs.export(make_logs(2)) is LogRecordExportResult.SUCCESS
    logs.shutdown()
    assert sorted(s.name for s in receiver.wait_for(3)) == ["span-0", "span-1", "span-2"]
    assert sorted(r.body for r in receiver.wait_for(2, signal="logs")) == ["line 0", "line 1"]
    for record in receiver.request_log():
        assert record.content_type == "application/x-protobuf"
        assert DISTRO_AGENT in record.headers["user-agent"]
        assert record.encoding == ""


def test_empty_batch_sends_nothing(receiver: OtlpReceiver, spans_exporter: OtlpHttpSpanExporter) -> None:
    assert spans_exporter.export([]) is SpanExportResult.SUCCESS
    assert receiver.request_log() == []


def test_one_keep_alive_connection_serves_many_exports(
    receiver: OtlpReceiver, spans_exporter: OtlpHttpSpanExporter
) -> None:
    for round_ in range(10):
        assert spans_exporter.export(make_spans(2, f"r{round_}")) is SpanExportResult.SUCCESS
    receiver.wait_for(20)
    assert len({record.peer for record in receiver.request_log()}) == 1


def test_connection_closed_by_the_collector_is_reopened_at_once(
    receiver: OtlpReceiver, spans_exporter: OtlpHttpSpanExporter
) -> None:
    assert spans_exporter.export(make_spans(1)) is SpanExportResult.SUCCESS
    connection = spans_exporter._process.connection
    assert connection is not None and connection.sock is not None
    connection.sock.shutdown(socket.SHUT_RDWR)  # as a collector's idle timeout would
    outcome = spans_exporter.send_until(make_spans(1, "again"), time.monotonic() + 5)
    assert outcome.delivered and outcome.attempts == 1, "a stale connection is replaced at once, without a backoff"
    assert len({record.peer for record in receiver.request_log()}) == 2


def test_concurrent_exports_from_two_threads_both_arrive(receiver: OtlpReceiver) -> None:
    receiver.configure(delay_s=0.3)
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"))
    results: list[Any] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(exporter.export(make_spans(2, f"t{i}")))) for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [SpanExportResult.SUCCESS] * 2
    receiver.wait_for(4)
    exporter.shutdown()


# --------------------------------------------------------------------------
# Retries, deadlines, shutdown
# --------------------------------------------------------------------------


def test_503_with_retry_after_is_retried_after_the_hint(receiver: OtlpReceiver, caplog: Any) -> None:
    receiver.configure(status=503, fail_times=2, retry_after_s=0.2)
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"))
    started = time.monotonic()
    assert exporter.export(make_spans(2)) is SpanExportResult.SUCCESS
    elapsed = time.monotonic() - started
    assert [r.status for r in receiver.request_log()] == [503, 503, 200]
    assert 0.35 <= elapsed < 1.4, f"Retry-After 0.2 s twice, not the 1 s (+-20 %) backoff twice: {elapsed:.2f}s"
    assert len(receiver.wait_for(2)) == 2
    assert distro_lines(caplog) == []
    exporter.shutdown()


@pytest.mark.parametrize("status", [429, 502, 504])
def test_other_retryable_statuses_are_retried(receiver: OtlpReceiver, status: int) -> None:
    receiver.configure(status=status, fail_times=1, retry_after_s=0)
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"))
    assert exporter.export(make_spans(1)) is SpanExportResult.SUCCESS
    assert [r.status for r in receiver.request_log()] == [status, 200]
    exporter.shutdown()


def test_400_is_not_retried_and_is_one_warning_line(receiver: OtlpReceiver, caplog: Any) -> None:
    receiver.configure(status=400)
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"))
    caplog.set_level(logging.WARNING, "otel_gevent_distro")
    outcome = exporter.send_until(make_spans(2), time.monotonic() + 5)
    assert not outcome.delivered and outcome.status == 400 and outcome.attempts == 1
    assert exporter.export(make_spans(2)) is SpanExportResult.FAILURE
    assert [r.status for r in receiver.request_log()] == [400, 400]
    lines = distro_lines(caplog)
    assert len(lines) == 1, "rate-limited: one line for both failures"
    assert lines[0].startswith("otel-gevent-distro: ") and "\n" not in lines[0]
    assert "HTTP 400" in lines[0] and "not retried" in lines[0]
    assert all(r.exc_info is None for r in caplog.records)
    exporter.shutdown()


def test_deadline_bounds_an_export_to_a_black_hole(blackhole: BlackHole) -> None:
    exporter = OtlpHttpSpanExporter(endpoint=blackhole.endpoint + "/v1/traces", timeout=30)
    started = time.monotonic()
    assert exporter.export_until(make_spans(1), started + 0.5) is SpanExportResult.FAILURE
    elapsed = time.monotonic() - started
    assert 0.45 <= elapsed < 1.0, elapsed
    assert blackhole.accepted >= 1
    exporter.shutdown()


def test_export_timeout_bounds_an_export_to_a_black_hole(blackhole: BlackHole) -> None:
    exporter = OtlpHttpSpanExporter(endpoint=blackhole.endpoint + "/v1/traces", timeout=0.4)
    started = time.monotonic()
    assert exporter.export_until(make_spans(1), started + 30) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 1.0
    exporter.shutdown()


def test_retry_after_beyond_the_deadline_gives_up_at_once(receiver: OtlpReceiver) -> None:
    receiver.configure(status=503, retry_after_s=30)
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"))
    started = time.monotonic()
    outcome = exporter.send_until(make_spans(1), started + 5)
    assert not outcome.delivered and outcome.attempts == 1 and "no time left" in outcome.error
    assert time.monotonic() - started < 0.5
    exporter.shutdown()


def test_refused_connection_is_retried_with_backoff_within_the_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    exporter = OtlpHttpSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces")
    started = time.monotonic()
    outcome = exporter.send_until(make_spans(1), started + 1.5)
    elapsed = time.monotonic() - started
    assert not outcome.delivered and outcome.attempts == 2, outcome  # 0 s, then ~1 s of backoff
    assert "ConnectionRefusedError" in outcome.error
    assert 0.75 <= elapsed < 2.0
    exporter.shutdown()


def test_shutdown_cuts_a_backoff_short_and_is_idempotent(receiver: OtlpReceiver) -> None:
    receiver.configure(status=503, retry_after_s=20)
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"), timeout=60)
    threading.Timer(0.3, exporter.shutdown).start()
    started = time.monotonic()
    outcome = exporter.send_until(make_spans(1), started + 60)
    assert time.monotonic() - started < 1.0
    assert not outcome.delivered and "shut down" in outcome.error
    callers = [threading.Thread(target=exporter.shutdown) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert exporter.export(make_spans(1)) is SpanExportResult.FAILURE
    assert exporter.force_flush() is True
    assert exporter._process.connection is None


# --------------------------------------------------------------------------
# Compression, headers, configuration
# --------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compression(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch, compression: str) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint + "/")
    exporter = OtlpHttpSpanExporter()
    assert exporter.export(make_spans(3)) is SpanExportResult.SUCCESS
    assert len(receiver.wait_for(3)) == 3
    assert [r.encoding for r in receiver.request_log()] == [compression]
    exporter.shutdown()


def test_headers_from_environment_and_arguments(receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-general=1,x-shared=general")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "Api-Key=s%20ecret,x-shared=traces")
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"), headers={"X-Arg": "yes"})
    assert exporter.export(make_spans(1)) is SpanExportResult.SUCCESS
    headers = receiver.request_log()[0].headers
    assert headers["api-key"] == "s ecret"
    assert headers["x-shared"] == "traces"
    assert "x-general" not in headers, "the per-signal variable replaces the generic one, as upstream"
    assert headers["x-arg"] == "yes"
    exporter.shutdown()


def test_endpoint_rules_match_upstream() -> None:
    assert resolve_config(TRACES, {}).url == "http://localhost:4318/v1/traces"
    assert resolve_config(LOGS, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1/"}).url == "http://c:1/v1/logs"
    assert resolve_config(LOGS, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1/base"}).url == "http://c:1/base/v1/logs"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:2/custom"}
    assert resolve_config(TRACES, env).url == "http://t:2/custom"
    assert resolve_config(LOGS, env).url == "http://c:1/v1/logs"
    assert resolve_config(TRACES, env, endpoint="http://a:3/x").url == "http://a:3/x"


def test_timeout_and_compression_values(caplog: Any) -> None:
    assert resolve_config(TRACES, {}).timeout_s == 10.0
    assert resolve_config(TRACES, {"OTEL_EXPORTER_OTLP_TIMEOUT": "2.5"}).timeout_s == 2.5
    env = {"OTEL_EXPORTER_OTLP_TIMEOUT": "7", "OTEL_EXPORTER_OTLP_LOGS_TIMEOUT": "3"}
    assert resolve_config(LOGS, env).timeout_s == 3.0
    assert resolve_config(TRACES, env).timeout_s == 7.0
    assert resolve_config(TRACES, env, timeout=1).timeout_s == 1.0
    caplog.set_level(logging.WARNING, "otel_gevent_distro")
    assert resolve_config(TRACES, {"OTEL_EXPORTER_OTLP_TIMEOUT": "soon"}).timeout_s == 10.0
    assert resolve_config(TRACES, {"OTEL_EXPORTER_OTLP_TRACES_COMPRESSION": "brotli"}).compression == "none"
    assert len(distro_lines(caplog)) == 2
    config = resolve_config(TRACES, {"OTEL_EXPORTER_OTLP_COMPRESSION": " GZIP "})
    assert config.compression == "gzip" and config.headers["content-encoding"] == "gzip"


def test_certificate_files_follow_the_same_precedence() -> None:
    env = {
        "OTEL_EXPORTER_OTLP_CERTIFICATE": "/ca-general.pem",
        "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE": "/ca-logs.pem",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY": "/key.pem",
        "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE": "/client-traces.pem",
    }
    traces, logs = resolve_config(TRACES, env), resolve_config(LOGS, env)
    assert (traces.certificate_file, logs.certificate_file) == ("/ca-general.pem", "/ca-logs.pem")
    assert traces.client_key_file == logs.client_key_file == "/key.pem"
    assert (traces.client_certificate_file, logs.client_certificate_file) == ("/client-traces.pem", None)
    assert resolve_config(TRACES, env, certificate_file="/arg.pem").certificate_file == "/arg.pem"


_VARIABLE_PARTS = ("ENDPOINT", "HEADERS", "TIMEOUT", "COMPRESSION", "CERTIFICATE")
_values = st.one_of(st.just(""), st.sampled_from(["http://g:1", "k=v", "3", "gzip", "/ca.pem", "http://s:2/p", "x=y"]))


@settings(max_examples=200, deadline=None)
@given(
    signal=st.sampled_from([TRACES, LOGS]),
    general=st.dictionaries(st.sampled_from(_VARIABLE_PARTS), _values),
    specific=st.dictionaries(st.sampled_from(_VARIABLE_PARTS), _values),
)
def test_per_signal_variables_win_over_generic_ones_as_upstream(
    signal: Any, general: dict[str, str], specific: dict[str, str]
) -> None:
    env = {f"OTEL_EXPORTER_OTLP_{part}": value for part, value in general.items()}
    env.update({f"OTEL_EXPORTER_OTLP_{signal.env}_{part}": value for part, value in specific.items()})
    config = resolve_config(signal, env)

    def chosen(part: str) -> str:
        return specific.get(part) or general.get(part) or ""

    if specific.get("ENDPOINT"):
        assert config.url == specific["ENDPOINT"]
    else:
        assert config.url == f"{(general.get('ENDPOINT') or 'http://localhost:4318').removesuffix('/')}/{signal.path}"
    assert config.certificate_file == (chosen("CERTIFICATE") or None)
    timeout = chosen("TIMEOUT")
    assert config.timeout_s == (3.0 if timeout == "3" else 10.0)
    assert config.compression == ("gzip" if chosen("COMPRESSION") == "gzip" else "none")
    header = chosen("HEADERS")
    for pair in ("k=v", "x=y"):
        key, value = pair.split("=")
        assert (config.headers.get(key) == value) == (header == pair)


# --------------------------------------------------------------------------
# Responses: partial success, Retry-After
# --------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(rejected=st.integers(-(2**63), 2**63 - 1), message=st.text(max_size=40))
def test_partial_success_parses_like_protobuf(rejected: int, message: str) -> None:
    response = trace_service_pb2.ExportTraceServiceResponse()
    response.partial_success.rejected_spans = rejected
    response.partial_success.error_message = message
    assert parse_partial_success(response.SerializeToString()) == (rejected, message)
    logs = logs_service_pb2.ExportLogsServiceResponse()
    logs.partial_success.rejected_log_records = rejected
    logs.partial_success.error_message = message
    assert parse_partial_success(logs.SerializeToString()) == (rejected, message)


@given(st.binary(max_size=64))
def test_partial_success_parser_survives_garbage(body: bytes) -> None:
    rejected, message = parse_partial_success(body)
    assert isinstance(rejected, int) and isinstance(message, str)


class _PartialHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        response = trace_service_pb2.ExportTraceServiceResponse()
        response.partial_success.rejected_spans = 1
        response.partial_success.error_message = "span too big"
        body = response.SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_partial_success_is_logged_once_and_reported(caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "otel_gevent_distro")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PartialHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        exporter = OtlpHttpSpanExporter(endpoint=f"http://127.0.0.1:{server.server_address[1]}/v1/traces")
        outcomes = [exporter.send_until(make_spans(3), time.monotonic() + 5) for _ in range(3)]
        exporter.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    assert all(o.delivered and o.rejected == 1 for o in outcomes)
    lines = distro_lines(caplog)
    assert len(lines) == 1 and "1 of 3 spans rejected: span too big" in lines[0]


def test_retry_after_forms() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(" 0.5 ") == 0.5
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None
    now = 1_700_000_000.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:30 GMT", now=now) == pytest.approx(10.0)


def test_bad_endpoint_fails_exports_with_one_line(caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "otel_gevent_distro")
    exporter = OtlpHttpSpanExporter(endpoint="collector:4318/v1/traces")
    assert exporter.export(make_spans(1)) is SpanExportResult.FAILURE
    assert any("not an http:// or https:// URL" in line for line in distro_lines(caplog))


# --------------------------------------------------------------------------
# TLS: certificate, client key and client certificate
# --------------------------------------------------------------------------


def _openssl(folder: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    _openssl(
        folder,
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        subject,
    )
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        folder, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext",
    )  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    _openssl(
        folder, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=otlp-test-ca", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    common = "basicConstraints=CA:FALSE\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    server = (
        "subjectAltName=IP:127.0.0.1\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
    )
    _signed(folder, "server", "/CN=127.0.0.1", common + server)
    _signed(
        folder,
        "client",
        "/CN=otlp-client",
        common + "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    return folder


class _TlsHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[tuple[str, int, str]]] = []
    ports: ClassVar[list[int]] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        peer = self.connection.getpeercert() or {}
        subject = dict(item[0] for item in peer.get("subject", ()))
        spans = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
        self.seen.append((self.path, spans, subject.get("commonName", "")))
        self.ports.append(self.client_address[1])
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def tls_server(certificates: Path) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    context.load_verify_locations(certificates / "ca.pem")
    context.verify_mode = ssl.CERT_OPTIONAL
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TlsHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    _TlsHandler.seen = []
    _TlsHandler.ports = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/v1/traces"
    server.shutdown()
    server.server_close()


def test_tls_with_certificate_and_client_certificate(
    tls_server: str, certificates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tls_server)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CERTIFICATE", str(certificates / "ca.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE", str(certificates / "client.pem"))
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_CLIENT_KEY", str(certificates / "client.key"))
    exporter = OtlpHttpSpanExporter()
    assert exporter.export(make_spans(2)) is SpanExportResult.SUCCESS
    assert exporter.export(make_spans(1)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert _TlsHandler.seen == [("/v1/traces", 2, "otlp-client"), ("/v1/traces", 1, "otlp-client")]
    assert len(set(_TlsHandler.ports)) == 1, "one keep-alive TLS connection"


def test_tls_trusts_requests_ca_bundle_as_upstream_does(
    tls_server: str, certificates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates / "ca.pem"))
    exporter = OtlpHttpSpanExporter(endpoint=tls_server)
    assert exporter.export(make_spans(1)) is SpanExportResult.SUCCESS
    exporter.shutdown()
    assert _TlsHandler.seen == [("/v1/traces", 1, "")]


def test_tls_refuses_an_unknown_certificate_without_retrying(tls_server: str, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "otel_gevent_distro")
    exporter = OtlpHttpSpanExporter(endpoint=tls_server)  # the system's CAs do not know the test CA
    started = time.monotonic()
    outcome = exporter.send_until(make_spans(1), started + 5)
    assert not outcome.delivered and outcome.attempts == 1 and "SSLCertVerificationError" in outcome.error
    assert time.monotonic() - started < 1
    assert _TlsHandler.seen == []
    exporter.shutdown()


# --------------------------------------------------------------------------
# Fork: a child never uses its parent's connection
# --------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_opens_its_own_connection_and_leaves_the_parents_alone(receiver: OtlpReceiver) -> None:
    exporter = OtlpHttpSpanExporter(endpoint=receiver.http_url("spans"))
    assert exporter.export(make_spans(1, "parent-before")) is SpanExportResult.SUCCESS
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 0 if exporter.export(make_spans(1, "child")) is SpanExportResult.SUCCESS else 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert exporter.export(make_spans(1, "parent-after")) is SpanExportResult.SUCCESS
    receiver.wait_for(3)
    peers = [record.peer for record in receiver.request_log()]
    assert len(peers) == 3
    assert peers[0] == peers[2], "the parent's keep-alive connection survived the child"
    assert peers[1] != peers[0], "the child opened its own connection"
    exporter.shutdown()


# --------------------------------------------------------------------------
# gevent: an export from a native thread of a patched process
# --------------------------------------------------------------------------

_GEVENT_PROGRAM = """
import json, sys, time, traceback
from gevent import monkey
monkey.patch_all()
import gevent, gevent._hub_local
from otel_gevent_distro.export.otlp_http import OtlpHttpSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

slow_url, refused_url, tls_url, certificates = sys.argv[1:5]
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
with provider.get_tracer("t").start_as_current_span("native"):
    pass
spans = list(memory.get_finished_spans())
# Built in the main thread, as the SDK builds exporters; only exports run in the native thread.
slow = OtlpHttpSpanExporter(endpoint=slow_url, compression="gzip")
refused = OtlpHttpSpanExporter(endpoint=refused_url)
tls = OtlpHttpSpanExporter(
    endpoint=tls_url,
    certificate_file=f"{certificates}/ca.pem",
    client_certificate_file=f"{certificates}/client.pem",
    client_key_file=f"{certificates}/client.key",
)
report = {"gevent_calls": [], "sdk_lock_calls": [], "logging_calls": [], "results": []}
ticks = []

def record_gevent(frame, event, arg):
    module = frame.f_globals.get("__name__", "") if event == "call" else getattr(arg, "__module__", "") or ""
    if event in ("call", "c_call") and module.startswith("gevent"):
        name = frame.f_code.co_name if event == "call" else getattr(arg, "__qualname__", repr(arg))
        caller = frame.f_back if event == "call" else frame
        # The SDK's BoundedList (span events, links) holds a threading.Lock made after
        # patching, so reading a span takes a gevent lock; that is the SDK's, not the transport's.
        sdk = caller is not None and caller.f_globals.get("__name__") == "opentelemetry.sdk.util"
        # The one warning line goes through the standard logging module, whose locks and
        # current_thread() are gevent's after patch_all (gevent's cross-thread lock support).
        logged = False
        while caller is not None and not logged:
            logged = caller.f_globals.get("__name__") == "logging"
            caller = caller.f_back
        bucket = "sdk_lock_calls" if sdk else "logging_calls" if logged else "gevent_calls"
        report[bucket].append(f"{module}.{name}")

def in_native_thread():
    try:
        sys.setprofile(record_gevent)
        report["results"].append(slow.export(spans).name)
        report["results"].append(tls.export(spans).name)
        report["results"].append(refused.export_until(spans, time.monotonic() + 1.3).name)
        for exporter in (slow, tls, refused):
            exporter.shutdown()
        sys.setprofile(None)
        report["hub_in_thread"] = gevent._hub_local.get_hub_if_exists() is not None
    except BaseException:
        sys.setprofile(None)
        report["error"] = traceback.format_exc()
    finally:
        done.release()

def tick():
    while True:
        ticks.append(time.monotonic())
        gevent.sleep(0.01)

done = monkey.get_original("_thread", "allocate_lock")()
done.acquire()
ticker = gevent.spawn(tick)
gevent.sleep(0)
monkey.get_original("_thread", "start_new_thread")(in_native_thread, ())
while not done.acquire(False):
    gevent.sleep(0.01)
ticker.kill()
gaps = [b - a for a, b in zip(ticks, ticks[1:])]
report["ticks"] = len(ticks)
report["max_gap_s"] = max(gaps)
print(json.dumps(report))
"""


def test_native_thread_export_under_patch_all_never_touches_gevent(
    receiver: OtlpReceiver, tmp_path: Path, tls_server: str, certificates: Path
) -> None:
    receiver.configure(delay_s=1.0)
    with socket.create_server(("127.0.0.1", 0)) as listener:
        refused = f"http://127.0.0.1:{listener.getsockname()[1]}/v1/traces"
    program = tmp_path / "native.py"
    program.write_text(textwrap.dedent(_GEVENT_PROGRAM))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, str(program), receiver.http_url("spans"), refused, tls_server, str(certificates)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in report, report["error"]
    assert report["results"] == ["SUCCESS", "SUCCESS", "FAILURE"], done.stderr
    assert report["gevent_calls"] == [], "the native thread called into gevent"
    assert set(report["sdk_lock_calls"]) <= {"gevent.thread.acquire", "gevent.thread.release"}
    assert report["logging_calls"], "the refused export logged its warning line from the thread"
    assert report["hub_in_thread"] is False
    # About 2.3 s of exporting (a 1 s collector, then 1.3 s of refusals and backoff):
    # the hub kept ticking every 10 ms all along.
    assert report["ticks"] >= 100, report
    assert report["max_gap_s"] < 0.5, report  # the collector takes 1 s: a blocked hub would show it
    assert len(receiver.wait_for(1)) == 1
    assert _TlsHandler.seen == [("/v1/traces", 1, "otlp-client")]
    assert "otel-gevent-distro: OTLP/HTTP export of 1 spans" in done.stderr
    assert "Traceback" not in done.stderr


# --------------------------------------------------------------------------
# End to end: opentelemetry-instrument picks the distro's exporter, or upstream's
# --------------------------------------------------------------------------

_APP = """
import logging
from opentelemetry import trace
tracer = trace.get_tracer("e2e")
for index in range(5):
    with tracer.start_as_current_span(f"e2e-{index}"):
        pass
logging.getLogger("e2e").warning("a log line")
from opentelemetry import metrics
metrics.get_meter("e2e").create_counter("e2e.count").add(3)
processor = trace.get_tracer_provider()._active_span_processor._span_processors[0]
exporter = getattr(processor, "span_exporter", None) or getattr(processor, "_exporter", None)
print(type(exporter).__module__)
"""


@pytest.mark.parametrize("choice", ["distro", "upstream"])
def test_instrumented_program_exports_through_the_chosen_exporter(
    receiver: OtlpReceiver, tmp_path: Path, choice: str
) -> None:
    app = write_app(tmp_path, _APP)
    env = {
        **receiver.env("http/protobuf"),
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_PYTHON_GEVENT_HEALTH": "false",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER": choice,
    }
    result = run_app(app, "instrument", env=env)
    result.assert_clean()
    assert len(receiver.wait_for(5)) == 5
    assert receiver.wait_for(lambda r: r.body == "a log line", signal="logs")
    assert receiver.wait_for(lambda m: m.name == "e2e.count", signal="metrics")
    agents = {record.signal: record.headers.get("user-agent", "") for record in receiver.request_log()}
    signals = ("spans", "logs", "metrics")
    if choice == "distro":
        assert "otel_gevent_distro.export.otlp_http" in result.stdout
        assert all(DISTRO_AGENT in agents[signal] for signal in signals), agents
    else:
        assert "opentelemetry.exporter.otlp.proto.http" in result.stdout
        assert not any(DISTRO_AGENT in agents[signal] for signal in signals), agents


def _checked(**env: str) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The check on the distro's defaults (set before it runs), changed by ``env``."""
    environ = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        **env,
    }
    return check_exporters(environ), environ


def test_exporter_check_picks_the_distros_exporter_for_otlp_http_signals() -> None:
    kept, environ = _checked()
    assert kept == {"traces": [DISTRO_OTLP_HTTP], "metrics": [DISTRO_OTLP_HTTP], "logs": [DISTRO_OTLP_HTTP]}
    assert environ["OTEL_TRACES_EXPORTER"] == environ["OTEL_LOGS_EXPORTER"] == DISTRO_OTLP_HTTP
    assert environ["OTEL_METRICS_EXPORTER"] == DISTRO_OTLP_HTTP
    kept, _ = _checked(OTEL_TRACES_EXPORTER="otlp_proto_http,console", OTEL_EXPORTER_OTLP_LOGS_PROTOCOL="grpc")
    assert kept["traces"] == [DISTRO_OTLP_HTTP, "console"]
    assert kept["logs"] == ["otlp"], "OTLP/gRPC keeps upstream's exporter"


def test_exporter_check_resolves_the_protocol_as_the_sdk_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """No protocol variable: the SDK builds OTLP/gRPC, so that is what is checked."""
    for variable in ("OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"):
        monkeypatch.delenv(variable, raising=False)
    assert sdk_configuration._get_exporter_entry_point("otlp", "traces") == "otlp_proto_grpc"
    assert check_exporters({"OTEL_TRACES_EXPORTER": "otlp"})["traces"] == ["otlp"]
    kept, _ = _checked(OTEL_EXPORTER_OTLP_PROTOCOL="grpc", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="http/protobuf")
    assert kept["traces"] == [DISTRO_OTLP_HTTP] and kept["logs"] == kept["metrics"] == ["otlp"]


def test_exporter_check_keeps_upstreams_when_asked_or_needed(caplog: Any) -> None:
    kept, environ = _checked(OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER="upstream")
    assert kept == {"traces": ["otlp"], "metrics": ["otlp"], "logs": ["otlp"]}
    assert environ["OTEL_TRACES_EXPORTER"] == "otlp"
    kept, _ = _checked(OTEL_PYTHON_EXPORTER_OTLP_HTTP_LOGS_CREDENTIAL_PROVIDER="my_session")
    assert kept["traces"] == kept["metrics"] == [DISTRO_OTLP_HTTP] and kept["logs"] == ["otlp"]
    caplog.set_level(logging.WARNING, "otel_gevent_distro")
    kept, _ = _checked(OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER="mine")
    assert kept["traces"] == [DISTRO_OTLP_HTTP]
    assert distro_lines(caplog) == [
        "otel-gevent-distro: OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER='mine' is not valid "
        "(accepted: distro, upstream); using distro."
    ]


def test_proxy_variables_as_requests_reads_them() -> None:
    url = "https://collector.example.com:4318/v1/traces"
    assert proxy_variable(url, {}) is None
    assert proxy_variable(url, {"HTTPS_PROXY": "http://proxy:3128"}) == "HTTPS_PROXY"
    assert proxy_variable(url, {"https_proxy": "http://p", "HTTPS_PROXY": "http://q"}) == "https_proxy"
    assert proxy_variable(url, {"HTTP_PROXY": "http://proxy:3128"}) is None, "an http proxy is not used for https"
    assert proxy_variable(url, {"ALL_PROXY": "socks5://p"}) == "ALL_PROXY"
    for no_proxy in ("*", "example.com", ".example.com", "collector.example.com:4318", "a, collector.example.com"):
        assert proxy_variable(url, {"HTTPS_PROXY": "http://p", "NO_PROXY": no_proxy}) is None, no_proxy
    assert proxy_variable(url, {"HTTPS_PROXY": "http://p", "NO_PROXY": "ample.com"}) == "HTTPS_PROXY"
    local = "http://10.1.2.3:4318/v1/logs"
    assert proxy_variable(local, {"http_proxy": "http://p", "no_proxy": "10.0.0.0/8"}) is None
    assert proxy_variable(local, {"http_proxy": "http://p", "no_proxy": "192.168.0.0/16"}) == "http_proxy"


def test_exporter_check_keeps_upstreams_behind_a_proxy() -> None:
    kept, _ = _checked(OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318", HTTP_PROXY="http://proxy:3128")
    assert kept["traces"] == kept["metrics"] == kept["logs"] == ["otlp"]
    kept, _ = _checked(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://collector:4318", HTTP_PROXY="http://proxy:3128", NO_PROXY="collector"
    )
    assert kept["traces"] == [DISTRO_OTLP_HTTP]


def test_module_imports_no_gevent() -> None:
    assert "gevent" not in otlp_http.__dict__
    source = Path(otlp_http.__file__).read_text()
    assert "import gevent" not in source
