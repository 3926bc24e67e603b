"""Real OTLP receivers for the test suite, benchmarks and demos.

This module owns the *collector side* of the tests: it speaks the actual
OTLP wire protocols on 127.0.0.1 so that exporters can be exercised end to
end, with no fakes patched into the code under test.

* :class:`OtlpReceiver` runs an OTLP/HTTP server (protobuf, gzip/deflate and
  JSON bodies) and an OTLP/gRPC server in background threads of the current,
  un-patched process, decodes every export into plain dataclasses
  (:class:`ReceivedSpan`, :class:`ReceivedLog`, :class:`ReceivedMetric`) and can
  emulate a slow or failing collector.
* :class:`BlackHole` accepts TCP connections and never answers, to exercise
  exporter timeouts.
* ``python -m tests.receiver`` runs either one as a separate process and
  prints its endpoints as one JSON line (see :func:`main`).

The module depends only on the standard library, ``grpcio`` and
``opentelemetry-proto``; it never imports the package under test.  The
servers use real OS threads: start them in a process that gevent has not
monkey-patched, or run the command line in a separate process.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import gzip
import json
import os
import selectors
import signal
import socket
import stat
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Literal, overload

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

__all__ = [
    "SIGNALS",
    "TRANSPORTS",
    "BlackHole",
    "OtlpReceiver",
    "ReceivedLog",
    "ReceivedMetric",
    "ReceivedSpan",
    "RequestRecord",
    "ResponseBehavior",
    "Signal",
    "Transport",
    "main",
    "otlp_env",
]

Signal = Literal["spans", "metrics", "logs"]
Transport = Literal["http", "grpc"]
SIGNALS: tuple[Signal, ...] = ("spans", "metrics", "logs")
TRANSPORTS: tuple[Transport, ...] = ("http", "grpc")
LOCALHOST = "127.0.0.1"

# --------------------------------------------------------------------------
# Decoded data
# --------------------------------------------------------------------------


@dataclass
class ReceivedSpan:
    """One span as decoded from an OTLP trace export."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str
    links: list[tuple[str, str]]
    events: list[str]
    status_code: int
    transport: Transport
    status_message: str = ""
    start_time_unix_nano: int = 0
    end_time_unix_nano: int = 0


@dataclass
class ReceivedLog:
    """One log record as decoded from an OTLP logs export."""

    body: Any
    severity_text: str
    severity_number: int
    attributes: dict[str, Any]
    trace_id: str
    span_id: str
    resource: dict[str, Any]
    scope: str
    transport: Transport
    event_name: str = ""
    time_unix_nano: int = 0


@dataclass
class ReceivedMetric:
    """One metric (with all its data points) from one OTLP metrics export.

    ``kind`` is ``"sum"``, ``"gauge"``, ``"histogram"``,
    ``"exponential_histogram"`` or ``"summary"``.  Each data point is a dict
    with ``attributes`` and ``time_unix_nano`` plus ``value`` (sum/gauge) or
    ``count``/``sum``/``bucket_counts``/... (histograms and summaries).
    """

    name: str
    unit: str
    kind: str
    data_points: list[dict[str, Any]]
    resource: dict[str, Any]
    scope: str
    transport: Transport
    description: str = ""
    temporality: int = 0
    is_monotonic: bool | None = None


@dataclass(frozen=True)
class RequestRecord:
    """Metadata of one export request as it reached the receiver."""

    signal: Signal
    transport: Transport
    status: int
    items: int
    encoding: str = ""  #: HTTP ``Content-Encoding``; gRPC does not expose its compression
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)  #: HTTP headers / gRPC metadata, lower-case keys
    peer: str = ""  #: HTTP: the client's ``host:port``, one per connection (keep-alive reuse shows as a repeat)


@dataclass(frozen=True)
class ResponseBehavior:
    """How the receiver answers exports.

    ``status`` is an HTTP status code; gRPC answers use the matching gRPC
    status (503 -> UNAVAILABLE, 429 -> RESOURCE_EXHAUSTED, ...).  When
    ``fail_times`` is set, only that many exports get ``status`` and the
    following ones succeed.  ``retry_after_s`` adds a ``Retry-After`` header
    (HTTP) or a ``google.rpc.RetryInfo`` trailer (gRPC) to error answers.
    """

    delay_s: float = 0.0
    status: int = 200
    fail_times: int | None = None
    retry_after_s: float | None = None


# --------------------------------------------------------------------------
# Protobuf -> Python decoding (generated modules carry no stubs: typed loosely)
# --------------------------------------------------------------------------


def any_value_to_python(value: Any) -> Any:
    """Convert an ``opentelemetry.proto.common.v1.AnyValue`` to a Python value."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_to_python(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_to_dict(value.kvlist_value.values)
    return getattr(value, kind)


def attributes_to_dict(key_values: Iterable[Any]) -> dict[str, Any]:
    """Convert repeated ``KeyValue`` messages to a plain dict."""
    return {kv.key: any_value_to_python(kv.value) for kv in key_values}


def _hex(raw: bytes) -> str:
    return raw.hex() if raw else ""


def _span_from_proto(span: Any, resource: dict[str, Any], scope: str, transport: Transport) -> ReceivedSpan:
    return ReceivedSpan(
        name=span.name,
        trace_id=_hex(span.trace_id),
        span_id=_hex(span.span_id),
        parent_span_id=_hex(span.parent_span_id),
        kind=int(span.kind),
        attributes=attributes_to_dict(span.attributes),
        resource=dict(resource),
        scope=scope,
        links=[(_hex(link.trace_id), _hex(link.span_id)) for link in span.links],
        events=[event.name for event in span.events],
        status_code=int(span.status.code),
        transport=transport,
        status_message=span.status.message,
        start_time_unix_nano=span.start_time_unix_nano,
        end_time_unix_nano=span.end_time_unix_nano,
    )


def decode_spans(request: Any, transport: Transport) -> list[ReceivedSpan]:
    """Flatten an ``ExportTraceServiceRequest`` into :class:`ReceivedSpan` items."""
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = attributes_to_dict(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope.name
            spans.extend(_span_from_proto(span, resource, scope, transport) for span in scope_spans.spans)
    return spans


def _log_from_proto(record: Any, resource: dict[str, Any], scope: str, transport: Transport) -> ReceivedLog:
    return ReceivedLog(
        body=any_value_to_python(record.body),
        severity_text=record.severity_text,
        severity_number=int(record.severity_number),
        attributes=attributes_to_dict(record.attributes),
        trace_id=_hex(record.trace_id),
        span_id=_hex(record.span_id),
        resource=dict(resource),
        scope=scope,
        transport=transport,
        event_name=getattr(record, "event_name", ""),
        time_unix_nano=record.time_unix_nano,
    )


def decode_logs(request: Any, transport: Transport) -> list[ReceivedLog]:
    """Flatten an ``ExportLogsServiceRequest`` into :class:`ReceivedLog` items."""
    logs: list[ReceivedLog] = []
    for resource_logs in request.resource_logs:
        resource = attributes_to_dict(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope.name
            logs.extend(_log_from_proto(record, resource, scope, transport) for record in scope_logs.log_records)
    return logs


def _optional(message: Any, field_name: str) -> Any:
    return getattr(message, field_name) if message.HasField(field_name) else None


def _point_base(point: Any) -> dict[str, Any]:
    return {
        "attributes": attributes_to_dict(point.attributes),
        "time_unix_nano": point.time_unix_nano,
    }


def _number_point(point: Any) -> dict[str, Any]:
    kind = point.WhichOneof("value")
    return {**_point_base(point), "value": getattr(point, kind) if kind else None}


def _histogram_point(point: Any) -> dict[str, Any]:
    return {
        **_point_base(point),
        "count": point.count,
        "sum": _optional(point, "sum"),
        "bucket_counts": list(point.bucket_counts),
        "explicit_bounds": list(point.explicit_bounds),
        "min": _optional(point, "min"),
        "max": _optional(point, "max"),
    }


def _exponential_histogram_point(point: Any) -> dict[str, Any]:
    return {
        **_point_base(point),
        "count": point.count,
        "sum": _optional(point, "sum"),
        "scale": point.scale,
        "zero_count": point.zero_count,
        "positive": {"offset": point.positive.offset, "bucket_counts": list(point.positive.bucket_counts)},
        "negative": {"offset": point.negative.offset, "bucket_counts": list(point.negative.bucket_counts)},
        "min": _optional(point, "min"),
        "max": _optional(point, "max"),
    }


def _summary_point(point: Any) -> dict[str, Any]:
    return {
        **_point_base(point),
        "count": point.count,
        "sum": point.sum,
        "quantile_values": [(q.quantile, q.value) for q in point.quantile_values],
    }


_POINT_DECODERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "sum": _number_point,
    "gauge": _number_point,
    "histogram": _histogram_point,
    "exponential_histogram": _exponential_histogram_point,
    "summary": _summary_point,
}


def _metric_from_proto(metric: Any, resource: dict[str, Any], scope: str, transport: Transport) -> ReceivedMetric:
    kind = metric.WhichOneof("data") or ""
    data = getattr(metric, kind) if kind else None
    decode_point = _POINT_DECODERS.get(kind)
    points = [decode_point(point) for point in data.data_points] if data is not None and decode_point else []
    return ReceivedMetric(
        name=metric.name,
        unit=metric.unit,
        kind=kind,
        data_points=points,
        resource=dict(resource),
        scope=scope,
        transport=transport,
        description=metric.description,
        temporality=int(getattr(data, "aggregation_temporality", 0)),
        is_monotonic=getattr(data, "is_monotonic", None),
    )


def decode_metrics(request: Any, transport: Transport) -> list[ReceivedMetric]:
    """Flatten an ``ExportMetricsServiceRequest`` into :class:`ReceivedMetric` items."""
    metrics: list[ReceivedMetric] = []
    for resource_metrics in request.resource_metrics:
        resource = attributes_to_dict(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            scope = scope_metrics.scope.name
            metrics.extend(_metric_from_proto(metric, resource, scope, transport) for metric in scope_metrics.metrics)
    return metrics


def count_items(signal: Signal, request: Any) -> int:
    """Count spans, log records or metric data points without decoding them."""
    if signal == "spans":
        return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
    if signal == "logs":
        return sum(len(sl.log_records) for rl in request.resource_logs for sl in rl.scope_logs)
    return sum(_metric_point_count(m) for rm in request.resource_metrics for sm in rm.scope_metrics for m in sm.metrics)


def _metric_point_count(metric: Any) -> int:
    kind = metric.WhichOneof("data")
    return len(getattr(metric, kind).data_points) if kind else 0


_DECODERS: dict[Signal, Callable[[Any, Transport], list[Any]]] = {
    "spans": decode_spans,
    "logs": decode_logs,
    "metrics": decode_metrics,
}


@dataclass(frozen=True)
class _SignalProtocol:
    signal: Signal
    http_path: str
    request_type: Any
    response_type: Any


_PROTOCOLS: dict[Signal, _SignalProtocol] = {
    "spans": _SignalProtocol(
        "spans",
        "/v1/traces",
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
    ),
    "metrics": _SignalProtocol(
        "metrics",
        "/v1/metrics",
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
    ),
    "logs": _SignalProtocol(
        "logs",
        "/v1/logs",
        logs_service_pb2.ExportLogsServiceRequest,
        logs_service_pb2.ExportLogsServiceResponse,
    ),
}
_PROTOCOL_BY_PATH = {protocol.http_path: protocol for protocol in _PROTOCOLS.values()}


# --------------------------------------------------------------------------
# Shared state: storage, counters and the answer policy
# --------------------------------------------------------------------------


def _empty_counts() -> dict[Transport, dict[str, int]]:
    return {transport: {"spans": 0, "logs": 0, "metric_points": 0, "requests": 0} for transport in TRANSPORTS}


_COUNT_KEYS: dict[Signal, str] = {"spans": "spans", "logs": "logs", "metrics": "metric_points"}


@dataclass(frozen=True)
class _Verdict:
    status: int
    delay_s: float
    retry_after_s: float | None
    generation: int

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _ReceiverState:
    """Thread-safe store shared by the HTTP and gRPC front ends."""

    def __init__(self, behavior: ResponseBehavior, store: bool) -> None:
        self.store = store
        self.closing = threading.Event()
        self._changed = threading.Condition()
        self._behavior = behavior
        self._failures_left = behavior.fail_times
        self._generation = 0
        self._items: dict[Signal, list[Any]] = {signal: [] for signal in SIGNALS}
        self._records: list[RequestRecord] = []
        self._counts = _empty_counts()

    # -- answer policy ------------------------------------------------------

    def configure(self, behavior: ResponseBehavior) -> None:
        with self._changed:
            self._behavior = behavior
            self._failures_left = behavior.fail_times

    @property
    def behavior(self) -> ResponseBehavior:
        with self._changed:
            return self._behavior

    def verdict(self) -> _Verdict:
        """Decide how to answer the export that just arrived."""
        with self._changed:
            behavior = self._behavior
            status = behavior.status
            if self._failures_left is not None:
                if self._failures_left > 0:
                    self._failures_left -= 1
                else:
                    status = HTTPStatus.OK
            return _Verdict(status, behavior.delay_s, behavior.retry_after_s, self._generation)

    # -- recording ----------------------------------------------------------

    def record(self, request: Any, record: RequestRecord, verdict: _Verdict) -> None:
        """Count one request and, if it was accepted, store its items."""
        items = _DECODERS[record.signal](request, record.transport) if self.store and verdict.ok else []
        with self._changed:
            if verdict.generation != self._generation:
                return  # the receiver was cleared while this export was in flight
            self._records.append(record)
            counts = self._counts[record.transport]
            counts["requests"] += 1
            if verdict.ok:
                counts[_COUNT_KEYS[record.signal]] += record.items
                self._items[record.signal].extend(items)
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._generation += 1
            for items in self._items.values():
                items.clear()
            self._records.clear()
            self._counts = _empty_counts()
            self._failures_left = self._behavior.fail_times
            self._changed.notify_all()

    # -- reading ------------------------------------------------------------

    def items(self, signal: Signal) -> list[Any]:
        with self._changed:
            return list(self._items[signal])

    def records(self) -> list[RequestRecord]:
        with self._changed:
            return list(self._records)

    def counts(self) -> dict[Transport, dict[str, int]]:
        with self._changed:
            return {transport: dict(counts) for transport, counts in self._counts.items()}

    def wait(self, check: Callable[[list[Any]], bool], signal: Signal, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not check(self._items[signal]):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True


# --------------------------------------------------------------------------
# OTLP/HTTP front end
# --------------------------------------------------------------------------

_HEX_ID_KEYS = frozenset({"traceId", "spanId", "parentSpanId"})


def _hex_ids_to_base64(node: Any) -> Any:
    """OTLP/JSON encodes ids as hex, protobuf JSON expects base64 for bytes."""
    if isinstance(node, list):
        return [_hex_ids_to_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted: dict[str, Any] = {}
    for key, value in node.items():
        if key in _HEX_ID_KEYS and isinstance(value, str):
            converted[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
        else:
            converted[key] = _hex_ids_to_base64(value)
    return converted


def _decompress(body: bytes, encoding: str) -> bytes:
    if encoding in ("", "identity"):
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding!r}")


class _BadRequest(Exception):
    """An export the receiver cannot decode; answered with the given status."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _parse_http_body(protocol: _SignalProtocol, body: bytes, media_type: str) -> Any:
    message = protocol.request_type()
    try:
        if media_type == "application/x-protobuf":
            message.ParseFromString(body)
        elif media_type == "application/json":
            json_format.ParseDict(_hex_ids_to_base64(json.loads(body)), message, ignore_unknown_fields=True)
        else:
            raise _BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Type {media_type!r}")
    except (DecodeError, json_format.ParseError, ValueError, binascii.Error) as error:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f"cannot decode body: {error}") from error
    return message


class _OtlpHttpServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its receiver state and open sockets."""

    daemon_threads = True

    def __init__(self, state: _ReceiverState) -> None:
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__((LOCALHOST, 0), _OtlpHttpHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Drop keep-alive connections so their handler threads end."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _OtlpHttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _OtlpHttpServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: benchmarks send thousands of requests."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        protocol = _PROTOCOL_BY_PATH.get(self.path.split("?", 1)[0])
        if protocol is None:
            self._answer(HTTPStatus.NOT_FOUND, f"no OTLP signal at {self.path}".encode(), "text/plain")
            return
        media_type = _media_type(self.headers.get("Content-Type", ""))
        encoding = self.headers.get("Content-Encoding", "").strip().lower()
        try:
            request = _parse_http_body(protocol, self._decompressed(body, encoding), media_type)
        except _BadRequest as error:
            self._answer(error.status, str(error).encode(), "text/plain")
            return
        self._export(protocol, request, media_type, encoding)

    def _decompressed(self, body: bytes, encoding: str) -> bytes:
        try:
            return _decompress(body, encoding)
        except (OSError, EOFError, zlib.error, ValueError) as error:
            raise _BadRequest(HTTPStatus.BAD_REQUEST, f"cannot decompress body: {error}") from error

    def _export(self, protocol: _SignalProtocol, request: Any, media_type: str, encoding: str) -> None:
        state = self.server.state
        verdict = state.verdict()
        if verdict.delay_s > 0:
            state.closing.wait(verdict.delay_s)
        record = RequestRecord(
            signal=protocol.signal,
            transport="http",
            status=verdict.status,
            items=count_items(protocol.signal, request),
            encoding=encoding,
            content_type=media_type,
            headers={key.lower(): value for key, value in self.headers.items()},
            peer=f"{self.client_address[0]}:{self.client_address[1]}",
        )
        state.record(request, record, verdict)
        if verdict.ok:
            self._answer_success(protocol, media_type)
        else:
            self._answer_failure(verdict)

    def _answer_success(self, protocol: _SignalProtocol, media_type: str) -> None:
        response = protocol.response_type()
        if media_type == "application/json":
            self._answer(HTTPStatus.OK, json_format.MessageToJson(response).encode(), media_type)
        else:
            self._answer(HTTPStatus.OK, response.SerializeToString(), "application/x-protobuf")

    def _answer_failure(self, verdict: _Verdict) -> None:
        headers = {}
        if verdict.retry_after_s is not None:
            headers["Retry-After"] = _format_seconds(verdict.retry_after_s)
        body = f"receiver configured to answer {verdict.status}".encode()
        self._answer(verdict.status, body, "text/plain", headers)

    def _answer(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


def _format_seconds(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


# --------------------------------------------------------------------------
# OTLP/gRPC front end
# --------------------------------------------------------------------------

_GRPC_CODES: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


def grpc_code_for(http_status: int) -> grpc.StatusCode:
    """The gRPC status the receiver uses in place of an HTTP error status."""
    return _GRPC_CODES.get(http_status, grpc.StatusCode.UNKNOWN)


def _retry_info_trailer(seconds: float) -> tuple[tuple[str, bytes], ...]:
    from google.rpc import error_details_pb2  # googleapis-common-protos, a grpc exporter dependency

    whole = int(seconds)
    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = whole
    info.retry_delay.nanos = round((seconds - whole) * 1e9)
    return (("google.rpc.retryinfo-bin", info.SerializeToString()),)


class _GrpcExportHandler:
    """Shared ``Export`` implementation for the three OTLP gRPC services."""

    def __init__(self, state: _ReceiverState, protocol: _SignalProtocol) -> None:
        self._state = state
        self._protocol = protocol

    def export(self, request: Any, context: grpc.ServicerContext) -> Any:
        verdict = self._state.verdict()
        if verdict.delay_s > 0:
            self._state.closing.wait(verdict.delay_s)
        metadata = {key: value for key, value in context.invocation_metadata() if isinstance(value, str)}
        record = RequestRecord(
            signal=self._protocol.signal,
            transport="grpc",
            status=verdict.status,
            items=count_items(self._protocol.signal, request),
            encoding=metadata.get("grpc-encoding", ""),
            content_type="application/grpc",
            headers=metadata,
        )
        self._state.record(request, record, verdict)
        if not verdict.ok:
            self._abort(context, verdict)
        return self._protocol.response_type()

    def _abort(self, context: grpc.ServicerContext, verdict: _Verdict) -> None:
        if verdict.retry_after_s is not None:
            context.set_trailing_metadata(_retry_info_trailer(verdict.retry_after_s))
        context.abort(grpc_code_for(verdict.status), f"receiver configured to answer {verdict.status}")


class _TraceServicer(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self, handler: _GrpcExportHandler) -> None:
        self._handler = handler

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handler.export(request, context)


class _MetricsServicer(metrics_service_pb2_grpc.MetricsServiceServicer):  # type: ignore[misc]
    def __init__(self, handler: _GrpcExportHandler) -> None:
        self._handler = handler

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handler.export(request, context)


class _LogsServicer(logs_service_pb2_grpc.LogsServiceServicer):  # type: ignore[misc]
    def __init__(self, handler: _GrpcExportHandler) -> None:
        self._handler = handler

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._handler.export(request, context)


def _start_grpc_server(state: _ReceiverState, max_workers: int) -> tuple[grpc.Server, int]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="otlp-grpc-receiver"),
        options=[("grpc.so_reuseport", 0)],
    )
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(
        _TraceServicer(_GrpcExportHandler(state, _PROTOCOLS["spans"])), server
    )
    metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(
        _MetricsServicer(_GrpcExportHandler(state, _PROTOCOLS["metrics"])), server
    )
    logs_service_pb2_grpc.add_LogsServiceServicer_to_server(
        _LogsServicer(_GrpcExportHandler(state, _PROTOCOLS["logs"])), server
    )
    port = server.add_insecure_port(f"{LOCALHOST}:0")
    server.start()
    return server, port


# --------------------------------------------------------------------------
# Public receivers
# --------------------------------------------------------------------------


def otlp_env(endpoint: str, protocol: str = "http/protobuf") -> dict[str, str]:
    """``OTEL_EXPORTER_OTLP_*`` variables pointing every signal at ``endpoint``."""
    if protocol not in ("http/protobuf", "http/json", "grpc"):
        raise ValueError(f"unknown OTLP protocol {protocol!r}")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}
    if protocol == "grpc":
        env["OTEL_EXPORTER_OTLP_INSECURE"] = "true"
    return env


def _describe(item: Any) -> str:
    if isinstance(item, ReceivedSpan):
        return f"span {item.name!r} ({item.transport})"
    if isinstance(item, ReceivedLog):
        return f"log {item.body!r} ({item.transport})"
    if isinstance(item, ReceivedMetric):
        return f"metric {item.name!r} {item.kind} x{len(item.data_points)} ({item.transport})"
    return repr(item)


class OtlpReceiver:
    """OTLP/HTTP and OTLP/gRPC servers on 127.0.0.1 that record what they get.

    Both servers start in the constructor on ephemeral ports and run in
    background threads.  Use as a context manager, or call :meth:`close`.

    :param delay_s: sleep this long before answering each export.
    :param status: HTTP status to answer exports with (gRPC uses the
        matching code, see :func:`grpc_code_for`); 200 means healthy.
    :param fail_times: answer only the first N exports with ``status``.
    :param retry_after_s: retry hint sent along with error answers.
    :param store: keep decoded items; ``False`` keeps only counters
        (cheaper for long benchmarks).
    """

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        status: int = 200,
        fail_times: int | None = None,
        retry_after_s: float | None = None,
        store: bool = True,
        grpc_workers: int = 16,
    ) -> None:
        self._default_behavior = ResponseBehavior(delay_s, status, fail_times, retry_after_s)
        self._state = _ReceiverState(self._default_behavior, store)
        self._closed = False
        self._http_server = _OtlpHttpServer(self._state)
        self._http_thread = threading.Thread(
            target=self._http_server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="otlp-http-receiver",
            daemon=True,
        )
        self._http_thread.start()
        self._grpc_server, self._grpc_port = _start_grpc_server(self._state, grpc_workers)

    # -- endpoints ----------------------------------------------------------

    @property
    def http_endpoint(self) -> str:
        """Base URL of the OTLP/HTTP server, without a signal path."""
        return f"http://{LOCALHOST}:{self._http_server.server_address[1]}"

    @property
    def grpc_endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self._grpc_port}"

    def http_url(self, signal: Signal) -> str:
        """Full OTLP/HTTP URL of one signal, e.g. ``.../v1/traces``."""
        return self.http_endpoint + _PROTOCOLS[signal].http_path

    def env(self, protocol: str = "http/protobuf") -> dict[str, str]:
        """``OTEL_EXPORTER_OTLP_*`` variables for ``http/protobuf``, ``http/json`` or ``grpc``."""
        endpoint = self.grpc_endpoint if protocol == "grpc" else self.http_endpoint
        return otlp_env(endpoint, protocol)

    # -- behaviour ----------------------------------------------------------

    def configure(self, **changes: Any) -> ResponseBehavior:
        """Change how exports are answered from now on (fields of :class:`ResponseBehavior`)."""
        behavior = replace(self._state.behavior, **changes)
        self._state.configure(behavior)
        return behavior

    @property
    def behavior(self) -> ResponseBehavior:
        return self._state.behavior

    # -- data ---------------------------------------------------------------

    def spans(self) -> list[ReceivedSpan]:
        return self._state.items("spans")

    def logs(self) -> list[ReceivedLog]:
        return self._state.items("logs")

    def metrics(self) -> list[ReceivedMetric]:
        return self._state.items("metrics")

    def metric_points(self, name: str) -> list[dict[str, Any]]:
        """All data points received for the metric ``name``, oldest first."""
        return [point for metric in self.metrics() if metric.name == name for point in metric.data_points]

    def request_log(self) -> list[RequestRecord]:
        """Every export request received (accepted or not), oldest first."""
        return self._state.records()

    @property
    def requests(self) -> dict[Signal, dict[Transport, int]]:
        """Number of export requests received, as ``requests[signal][transport]``."""
        counts: dict[Signal, dict[Transport, int]] = {s: dict.fromkeys(TRANSPORTS, 0) for s in SIGNALS}
        for record in self._state.records():
            counts[record.signal][record.transport] += 1
        return counts

    def counts(self) -> dict[Transport, dict[str, int]]:
        """Accepted items and requests per transport: spans, logs, metric_points, requests."""
        return self._state.counts()

    @overload
    def wait_for(
        self,
        match: int | Callable[[ReceivedSpan], bool] = ...,
        *,
        signal: Literal["spans"] = ...,
        timeout: float = ...,
        min_matches: int = ...,
    ) -> list[ReceivedSpan]: ...

    @overload
    def wait_for(
        self,
        match: int | Callable[[ReceivedLog], bool] = ...,
        *,
        signal: Literal["logs"],
        timeout: float = ...,
        min_matches: int = ...,
    ) -> list[ReceivedLog]: ...

    @overload
    def wait_for(
        self,
        match: int | Callable[[ReceivedMetric], bool] = ...,
        *,
        signal: Literal["metrics"],
        timeout: float = ...,
        min_matches: int = ...,
    ) -> list[ReceivedMetric]: ...

    def wait_for(
        self,
        match: int | Callable[[Any], bool] = 1,
        *,
        signal: Signal = "spans",
        timeout: float = 10.0,
        min_matches: int = 1,
    ) -> list[Any]:
        """Wait until enough items of ``signal`` arrived and return them.

        With an int ``match``, wait for at least that many items and return
        all of them.  With a predicate, wait for at least ``min_matches``
        items satisfying it and return only those.  Raises AssertionError
        listing what did arrive when ``timeout`` expires.
        """
        if signal not in SIGNALS:
            raise ValueError(f"unknown signal {signal!r}; expected one of {SIGNALS}")
        select, needed = _selector(match, min_matches)
        if self._state.wait(lambda items: len(select(items)) >= needed, signal, timeout):
            return select(self._state.items(signal))
        raise AssertionError(self._timeout_message(signal, match, needed, timeout))

    def _timeout_message(self, signal: Signal, match: object, needed: int, timeout: float) -> str:
        arrived = self._state.items(signal)
        what = f"{needed} {signal}" if isinstance(match, int) else f"{needed} {signal} matching {match!r}"
        lines = [f"timed out after {timeout:g}s waiting for {what}; {len(arrived)} {signal} arrived:"]
        lines.extend(f"  - {_describe(item)}" for item in arrived[:50])
        if len(arrived) > 50:
            lines.append(f"  ... and {len(arrived) - 50} more")
        lines.append(f"requests per signal/transport: {self.requests}")
        return "\n".join(lines)

    # -- lifecycle ----------------------------------------------------------

    def clear(self) -> None:
        """Forget all received data and counters; in-flight exports are dropped."""
        self._state.clear()

    def reset(self) -> None:
        """:meth:`clear` and restore the answer behaviour given to the constructor."""
        self._state.configure(self._default_behavior)
        self._state.clear()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._state.closing.set()
        self._grpc_server.stop(grace=None)
        self._http_server.shutdown()
        self._http_server.close_connections()
        self._http_server.server_close()
        self._http_thread.join(timeout=5)

    def __enter__(self) -> OtlpReceiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OtlpReceiver(http={self.http_endpoint!r}, grpc={self.grpc_endpoint!r})"


def _selector(match: int | Callable[[Any], bool], min_matches: int) -> tuple[Callable[[list[Any]], list[Any]], int]:
    if isinstance(match, int):
        return list, match
    predicate = match

    def select(items: list[Any]) -> list[Any]:
        return [item for item in items if predicate(item)]

    return select, min_matches


class BlackHole:
    """A TCP server that accepts connections and never reads nor answers.

    Sockets stay open until :meth:`close`, so clients block until their own
    timeouts fire.  Works as an endpoint for both OTLP transports.
    """

    def __init__(self) -> None:
        self._listener = socket.create_server((LOCALHOST, 0), backlog=128)
        self._listener.setblocking(False)
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, name="otlp-blackhole", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def endpoint(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    @property
    def accepted(self) -> int:
        """Number of connections accepted so far."""
        with self._lock:
            return len(self._connections)

    def env(self, protocol: str = "http/protobuf") -> dict[str, str]:
        return otlp_env(self.endpoint, protocol)

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            while not self._stop.is_set():
                if selector.select(timeout=0.1):
                    self._accept_pending()

    def _accept_pending(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except (BlockingIOError, OSError):
                return
            with self._lock:
                self._connections.append(connection)

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._accept_pending()  # count connections still waiting in the backlog
        self._listener.close()
        with self._lock:
            for connection in self._connections:
                connection.close()

    def __enter__(self) -> BlackHole:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BlackHole({self.endpoint!r}, accepted={self.accepted})"


# --------------------------------------------------------------------------
# Command line: python -m tests.receiver
# --------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.receiver",
        description="Run an OTLP receiver (or a black hole) until SIGTERM/SIGINT or stdin closes.",
    )
    parser.add_argument("--mode", choices=("healthy", "blackhole"), default="healthy")
    parser.add_argument("--delay", type=float, default=0.0, metavar="S", help="sleep S seconds before each answer")
    parser.add_argument("--status", type=int, default=200, help="HTTP status to answer (gRPC uses the matching code)")
    parser.add_argument("--fail-times", type=int, default=None, metavar="N", help="answer --status only N times")
    parser.add_argument("--summary", action="store_true", help="print a JSON line of counts on exit")
    return parser.parse_args(argv)


def _print_json(payload: Mapping[str, Any]) -> None:
    with contextlib.suppress(BrokenPipeError):
        print(json.dumps(payload), flush=True)


def _stdin_is_watchable() -> bool:
    """Only a pipe or socket on stdin signals the parent going away by EOF."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _watch_stdin(stop: threading.Event) -> None:
    def drain() -> None:
        fd = sys.stdin.fileno()
        while os.read(fd, 65536):
            pass
        stop.set()

    threading.Thread(target=drain, name="stdin-watch", daemon=True).start()


def _install_stop_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _serve_until_stopped(stop: threading.Event) -> None:
    if _stdin_is_watchable():
        _watch_stdin(stop)
    while not stop.wait(0.2):
        pass


@dataclass
class _Served:
    """What the CLI is serving: its announcement and how to summarise it."""

    announcement: dict[str, str]
    summary: Callable[[], dict[str, Any]]
    close: Callable[[], None]


def _serve_healthy(args: argparse.Namespace) -> _Served:
    receiver = OtlpReceiver(delay_s=args.delay, status=args.status, fail_times=args.fail_times, store=False)
    return _Served(
        announcement={"http": receiver.http_endpoint, "grpc": receiver.grpc_endpoint},
        summary=lambda: {"summary": receiver.counts()},
        close=receiver.close,
    )


def _serve_blackhole(args: argparse.Namespace) -> _Served:
    hole = BlackHole()
    return _Served(
        announcement={"endpoint": hole.endpoint},
        summary=lambda: {"summary": {"accepted": hole.accepted}},
        close=hole.close,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT or EOF on a piped stdin.

    Prints ``{"http": ..., "grpc": ...}`` (healthy) or ``{"endpoint": ...}``
    (blackhole) once listening; with ``--summary`` prints on exit
    ``{"summary": {"http": {"spans", "logs", "metric_points", "requests"}, "grpc": {...}}}``
    (healthy) or ``{"summary": {"accepted": N}}`` (blackhole).
    """
    args = _parse_args(argv)
    stop = threading.Event()
    _install_stop_handlers(stop)
    served = _serve_blackhole(args) if args.mode == "blackhole" else _serve_healthy(args)
    try:
        _print_json(served.announcement)
        _serve_until_stopped(stop)
    finally:
        served.close()
    if args.summary:
        _print_json(served.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
