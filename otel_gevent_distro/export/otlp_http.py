"""A lean OTLP/HTTP (protobuf) exporter for spans and log records.

Built to run on a native OS thread of a process where gevent's ``patch_all()``
ran: its transport never calls gevent's patched ``socket``, ``ssl``, DNS,
``sleep`` or locks, so it never creates a gevent hub in the thread that exports
and a slow collector never stalls the application's hub. Two things outside the
transport still meet gevent in that thread: its one rate-limited warning line
goes through :mod:`logging`, whose locks and ``current_thread()`` are gevent's
after patching; the SDK's spans guard their events and links with locks made
after patching, which any encoder reading them takes. Name resolution
(``getaddrinfo``) blocks that thread without a timeout, as it does for every
client. Build the exporter before the thread runs (the SDK does): imports and
lookups of the originals happen then, not while exporting.

* The transport is :class:`http.client.HTTPConnection` whose ``connect()`` is
  replaced by :func:`_open_socket`: name resolution with ``_socket.getaddrinfo``
  (C, never patched), the *original* ``socket.socket`` class and a connect loop
  of its own (``socket.create_connection`` looks ``getaddrinfo`` up in the
  patched module), TLS with the original ``ssl.SSLContext`` through
  ``wrap_bio`` (:class:`_TlsSocket`: its ``wrap_socket`` breaks after
  patching). Everything else ``http.client`` does on the socket (``sendall``,
  ``makefile``, ``recv_into``, ``close``) is a method of those classes.
* Backoff waits on an original ``_thread`` lock with a timeout; ``shutdown()``
  releases it to cut a wait short.
* One keep-alive connection per exporter and per process: a connection opened
  by a parent process is never used by a child; the child closes its copy of
  the descriptor (nothing is sent, no ``shutdown()``) and opens its own.
* Configuration follows upstream's ``opentelemetry-exporter-otlp-proto-http``:
  ``OTEL_EXPORTER_OTLP_{TRACES,LOGS}_*`` before ``OTEL_EXPORTER_OTLP_*``, the
  signal path appended only to the generic endpoint, timeouts in seconds. With
  no certificate set, the system's CAs and ``certifi``'s (upstream's
  ``requests`` trusts certifi's) are trusted, or ``REQUESTS_CA_BUNDLE`` /
  ``CURL_CA_BUNDLE`` when set. Proxies and ``requests`` credential providers
  are not supported: the exporter check keeps upstream's exporter for them
  (:func:`proxy_variable`).
* Retries follow the OTLP specification: 429, 502, 503, 504 and connection
  errors are retried with exponential backoff and jitter, ``Retry-After``
  (seconds or an HTTP date) is honoured, nothing waits past the export timeout
  or the caller's deadline (:meth:`OtlpHttpSpanExporter.export_until`).
* The exporter's own requests stay out of tracing because nothing here is
  instrumented: no OpenTelemetry instrumentation wraps ``http.client`` or raw
  sockets (the ``requests``/``urllib3`` ones that see upstream's exporter do not
  apply). The pipeline's ``suppress_instrumentation()`` around each export
  covers third-party patches on top; this module does not repeat it.
"""

from __future__ import annotations

import _socket
import contextlib
import encodings.idna  # noqa: F401 - getaddrinfo of a str host needs it; imported here, not in the export thread
import gzip
import http.client
import importlib
import io
import ipaddress
import math
import os
import random
import ssl
import sys
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.version import __version__ as _sdk_version
from opentelemetry.util.re import parse_env_headers

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.version import __version__

try:  # SDK >= 1.39 names; the older ones stay as deprecated aliases for a while.
    from opentelemetry.sdk._logs.export import LogRecordExporter as _LogExporterBase
    from opentelemetry.sdk._logs.export import LogRecordExportResult as _LogExportResult
except ImportError:  # pragma: no cover - depends on the installed SDK
    from opentelemetry.sdk._logs.export import LogExporter as _LogExporterBase  # type: ignore[attr-defined,no-redef]
    from opentelemetry.sdk._logs.export import LogExportResult as _LogExportResult  # type: ignore[attr-defined,no-redef,assignment]

__all__ = ["ExportOutcome", "OtlpHttpLogExporter", "OtlpHttpSpanExporter", "resolve_config"]

DEFAULT_ENDPOINT = "http://localhost:4318"
DEFAULT_TIMEOUT_S = 10.0
#: Upstream drops requests above this size (before compression); so does this exporter.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
#: Attempts per export, the first one included (upstream's figure).
MAX_ATTEMPTS = 6
#: First backoff; doubled on each retry, with +-20 % jitter.
BACKOFF_BASE_S = 1.0
BACKOFF_JITTER = 0.2
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
#: At most one warning line about failed exports per exporter per this many seconds.
WARNING_INTERVAL_S = 10.0
COMPRESSIONS = ("none", "gzip", "deflate")
USER_AGENT = f"OTel-OTLP-Exporter-Python/{_sdk_version} otel-gevent-distro/{__version__}"


# --------------------------------------------------------------------------
# Encoding: the one place that chooses the encoder
# --------------------------------------------------------------------------


def _encoders() -> tuple[Callable[[Sequence[Any]], bytes], Callable[[Sequence[Any]], bytes]]:
    """``(encode_spans, encode_logs)``: the distro's own encoder (:mod:`.otlp_encoding`)."""
    from otel_gevent_distro.export import otlp_encoding

    return otlp_encoding.encode_spans, otlp_encoding.encode_logs


def encoders_available() -> bool:
    """True when the encoder imports (it needs only the SDK)."""
    try:
        _encoders()
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------
# Configuration, as upstream's HTTP exporter reads it
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Signal:
    env: str  #: TRACES or LOGS, as in OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
    path: str  #: appended to the generic endpoint only
    noun: str  #: what the items are called in log lines


TRACES = _Signal("TRACES", "v1/traces", "spans")
LOGS = _Signal("LOGS", "v1/logs", "log records")
METRICS = _Signal("METRICS", "v1/metrics", "metric data points")


@dataclass(frozen=True)
class ExporterConfig:
    """What one exporter sends where; built by :func:`resolve_config`."""

    url: str
    headers: Mapping[str, str]
    timeout_s: float
    compression: str
    certificate_file: str | None
    client_key_file: str | None
    client_certificate_file: str | None


def _first(environ: Mapping[str, str], *names: str) -> str | None:
    """The first variable set to a non-empty value (upstream's ``a or b`` reading)."""
    for name in names:
        value = environ.get(name)
        if value:
            return value
    return None


def _compression_name(value: Any) -> str | None:
    if value is None:
        return None
    name = str(getattr(value, "value", value)).strip().lower()  # upstream's Compression enums carry .value
    return name or None


def endpoint_url(signal: _Signal, environ: Mapping[str, str]) -> str:
    """The signal's URL: the per-signal endpoint as it is, else the generic one plus the signal path."""
    url = environ.get(f"OTEL_EXPORTER_OTLP_{signal.env}_ENDPOINT")
    if url:
        return url
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    return f"{base.removesuffix('/')}/{signal.path}"


def _bypassed(host: str, port: int | None, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host`` (names, suffixes, ``host:port``, IPv4 CIDRs, ``*``)."""
    for entry in (item.strip() for item in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            with contextlib.suppress(ValueError):
                if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                    return True
            continue
        name = entry.lstrip(".")
        for candidate in (host, f"{host}:{port}" if port else host):
            if candidate == name or candidate.endswith(f".{name}"):
                return True
    return False


def proxy_variable(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy variable upstream's ``requests`` session would use for ``url``, or None.

    The distro's exporter connects directly; the exporter check keeps
    upstream's exporter when a proxy applies.
    """
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    if not parts.hostname:
        return None
    for name in (f"{parts.scheme.lower()}_proxy", "all_proxy"):
        for variable in (name, name.upper()):
            if env.get(variable, "").strip():
                try:
                    port = parts.port
                except ValueError:
                    port = None
                no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
                return None if _bypassed(parts.hostname, port, no_proxy) else variable
    return None


def _ca_bundle(environ: Mapping[str, str]) -> str | None:
    """``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE``: upstream's session trusts them when no certificate is set."""
    return environ.get("REQUESTS_CA_BUNDLE") or environ.get("CURL_CA_BUNDLE") or None


def _certifi_bundle() -> str | None:
    try:
        import certifi  # requests' own trust store, so what upstream trusts stays trusted
    except ImportError:
        return None
    return str(certifi.where())


def resolve_config(
    signal: _Signal,
    environ: Mapping[str, str] | None = None,
    *,
    endpoint: str | None = None,
    certificate_file: str | None = None,
    client_key_file: str | None = None,
    client_certificate_file: str | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
    compression: Any = None,
) -> ExporterConfig:
    """Combine the arguments and ``OTEL_EXPORTER_OTLP_*`` the way upstream's HTTP exporter does.

    Arguments win; then the per-signal variable; then the generic one. Only the
    generic endpoint (or the default ``http://localhost:4318``) gets the signal
    path appended; a per-signal endpoint is used as it is. The timeout is in
    seconds. A bad timeout or compression gives one warning and the default.
    """
    env = os.environ if environ is None else environ
    sig = f"OTEL_EXPORTER_OTLP_{signal.env}_"
    url = endpoint or endpoint_url(signal, env)

    merged = {"content-type": "application/x-protobuf", "user-agent": USER_AGENT}
    merged.update(parse_env_headers(_first(env, f"{sig}HEADERS", "OTEL_EXPORTER_OTLP_HEADERS") or "", liberal=True))
    merged.update({key.lower(): value for key, value in (headers or {}).items()})

    if timeout is not None:
        raw_timeout: Any = timeout
        timeout_from = "timeout"
    else:
        raw_timeout = _first(env, f"{sig}TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")
        timeout_from = f"{sig}TIMEOUT or OTEL_EXPORTER_OTLP_TIMEOUT"
    timeout_s = DEFAULT_TIMEOUT_S
    if raw_timeout is not None:
        try:
            timeout_s = float(raw_timeout)
        except (TypeError, ValueError):
            timeout_s = math.nan
        if not (0 < timeout_s < math.inf):
            logger.warning(
                "%s%s=%r is not valid (accepted: a number of seconds > 0); using %g.",
                PREFIX,
                timeout_from,
                raw_timeout,
                DEFAULT_TIMEOUT_S,
            )
            timeout_s = DEFAULT_TIMEOUT_S

    chosen = (
        _compression_name(compression)
        or (_first(env, f"{sig}COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION") or "none").strip().lower()
    )
    if chosen not in COMPRESSIONS:
        logger.warning(
            "%sOTLP compression %r is not valid (accepted: %s); using none.", PREFIX, chosen, ", ".join(COMPRESSIONS)
        )
        chosen = "none"
    if chosen != "none":
        merged.setdefault("content-encoding", chosen)

    return ExporterConfig(
        url=url,
        headers=merged,
        timeout_s=timeout_s,
        compression=chosen,
        certificate_file=certificate_file or _first(env, f"{sig}CERTIFICATE", "OTEL_EXPORTER_OTLP_CERTIFICATE"),
        client_key_file=client_key_file or _first(env, f"{sig}CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        client_certificate_file=client_certificate_file
        or _first(env, f"{sig}CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
    )


# --------------------------------------------------------------------------
# The unpatched standard library
# --------------------------------------------------------------------------


def _original(module: str, name: str) -> Any:
    """``module.name`` as it was before gevent patched it (gevent need not be installed).

    Resolved before patching, the current attribute is the original; after,
    gevent keeps the original for :func:`gevent.monkey.get_original`.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None:
        return monkey.get_original(module, name)
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class _Stdlib:
    """The original classes the transport uses, looked up once, in the thread that builds the exporter.

    Looking them up there keeps even gevent's ``get_original`` out of the
    thread that exports.
    """

    allocate_lock: Callable[[], Any]
    socket_class: Any
    ssl_context_class: Any

    @classmethod
    def find(cls) -> _Stdlib:
        return cls(
            _original("_thread", "allocate_lock"),
            _original("socket", "socket"),
            _original("ssl", "SSLContext"),
        )


def _open_socket(host: str, port: int, deadline: float, tls: Any, socket_class: Any) -> Any:
    """A connected (and TLS-wrapped when ``tls``) original socket, or OSError."""
    last_error: OSError | None = None
    for family, kind, proto, _name, address in _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket_class(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(address)
            sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            if tls is not None:
                sock.settimeout(max(0.001, deadline - time.monotonic()))
                return _TlsSocket(sock, tls, host)
            return sock
        except OSError as error:
            last_error = error
            sock.close()
    raise last_error or TimeoutError(f"no time left to connect to {host}:{port}")


class _TlsSocket:
    """TLS over an original socket, through :class:`ssl.SSLObject` and memory BIOs.

    ``SSLContext.wrap_socket`` cannot serve here: ``SSLSocket._create`` calls
    ``super(SSLSocket, self)`` with the *module's* ``SSLSocket``, which gevent
    replaced, so the original context's ``wrap_socket`` fails after
    ``patch_all()``. ``wrap_bio`` uses nothing gevent patches; this class pumps
    the BIOs over the plain socket (its timeout bounds every wait) and offers
    what ``http.client`` uses: ``sendall``, ``makefile("rb")``, ``settimeout``,
    ``close``. Closing never sends a close_notify.
    """

    def __init__(self, sock: Any, context: Any, host: str) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_hostname=host)
        self._readers = 0
        self._closed = False
        try:
            self._pump(self._tls.do_handshake)
        except BaseException:
            sock.close()
            raise

    def _pump(self, operation: Callable[..., Any], *args: Any) -> Any:
        while True:
            try:
                result = operation(*args)
            except ssl.SSLWantReadError:
                self._flush()
                if self._incoming.eof:
                    raise ssl.SSLEOFError("the peer closed the connection") from None
                data = self._sock.recv(65536)
                if data:
                    self._incoming.write(data)
                else:
                    self._incoming.write_eof()
                continue
            self._flush()
            return result

    def _flush(self) -> None:
        pending = self._outgoing.read()
        if pending:
            self._sock.sendall(pending)

    def sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[self._pump(self._tls.write, view) :]

    def recv_into(self, buffer: Any) -> int:
        try:
            return int(self._pump(self._tls.read, len(buffer), buffer))
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0  # the peer closed; http.client reports it as it would for a plain socket

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_TlsReader(self))

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def close(self) -> None:
        self._closed = True
        if self._readers <= 0:
            self._sock.close()

    def _reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self._sock.close()


class _TlsReader(io.RawIOBase):
    """The raw stream under ``makefile("rb")`` of a :class:`_TlsSocket`."""

    def __init__(self, tls: _TlsSocket) -> None:
        super().__init__()
        self._tls: _TlsSocket | None = tls

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._tls.recv_into(buffer) if self._tls is not None else 0

    def close(self) -> None:
        if self._tls is not None:
            tls, self._tls = self._tls, None
            tls._reader_closed()
        super().close()


class _Connection(http.client.HTTPConnection):
    """``http.client`` on a socket opened by :func:`_open_socket`, bounded by ``deadline``."""

    def __init__(self, host: str, port: int, tls: Any, socket_class: Any) -> None:
        super().__init__(host, port)
        self.deadline = 0.0
        self._tls = tls
        self._socket_class = socket_class

    def connect(self) -> None:
        self.sock = _open_socket(self.host, self.port, self.deadline, self._tls, self._socket_class)


class _ProcessState:
    """The connection and its lock, owned by the process that made them."""

    def __init__(self, allocate_lock: Callable[[], Any]) -> None:
        self.pid = os.getpid()
        self.busy = allocate_lock()
        self.connection: _Connection | None = None


def _forget_inherited(connection: _Connection | None) -> None:
    """Drop a connection opened by the parent process.

    ``HTTPConnection.close()`` only closes this process's copy of the
    descriptor (and of a TLS socket, without a close_notify): nothing is
    written, the parent's connection stays up.
    """
    if connection is not None:
        with contextlib.suppress(OSError):
            connection.close()


# --------------------------------------------------------------------------
# Responses
# --------------------------------------------------------------------------


def _fields(data: bytes) -> list[tuple[int, int, Any]]:
    """Top-level protobuf fields ``(number, wire type, value)``; stops at malformed data."""
    found = []
    index, end = 0, len(data)
    while index < end:
        key, index = _varint(data, index)
        if index < 0:
            break
        number, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, index = _varint(data, index)
        elif wire == 1:
            value, index = data[index : index + 8], index + 8
        elif wire == 2:
            length, index = _varint(data, index)
            if index < 0:
                break
            value, index = data[index : index + length], index + length
        elif wire == 5:
            value, index = data[index : index + 4], index + 4
        else:
            break
        if index < 0 or index > end:
            break
        found.append((number, wire, value))
    return found


def _varint(data: bytes, index: int) -> tuple[int, int]:
    """``(value, next index)``, or ``(0, -1)`` when ``data`` ends inside the varint."""
    value, shift = 0, 0
    while index < len(data) and shift < 70:
        byte = data[index]
        index += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, index
        shift += 7
    return 0, -1


def parse_partial_success(body: bytes) -> tuple[int, str]:
    """``(rejected items, error message)`` from an Export{Trace,Logs}ServiceResponse body.

    Both messages carry ``partial_success`` as field 1, whose field 1 is the
    rejected count (int64) and field 2 the error message.
    """
    rejected, message = 0, ""
    for number, wire, value in _fields(body):
        if number != 1 or wire != 2:
            continue
        for inner_number, inner_wire, inner in _fields(value):
            if inner_number == 1 and inner_wire == 0:
                rejected = inner - (1 << 64) if inner >= 1 << 63 else inner
            elif inner_number == 2 and inner_wire == 2:
                message = inner.decode("utf-8", "replace")
    return rejected, message


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP date; None when absent or bad."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            moment = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# --------------------------------------------------------------------------
# The exporter
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportOutcome:
    """What one export did. Nothing is counted globally: callers add these up."""

    delivered: bool
    items: int
    attempts: int = 0
    status: int | None = None  #: the last HTTP status received, if any
    rejected: int = 0  #: items the collector refused in a partial success
    error: str = ""  #: one line describing the failure; empty when delivered


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    body: bytes = b""
    retry_after: str | None = None
    error: str = ""
    retryable: bool = False
    stale: bool = False  #: failed on a reused keep-alive connection before any answer


class _OtlpHttpExporter:
    """The transport shared by the span and the log record exporter."""

    _signal: _Signal
    _success: Any
    _failure: Any

    def __init__(
        self,
        endpoint: str | None = None,
        certificate_file: str | None = None,
        client_key_file: str | None = None,
        client_certificate_file: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        compression: Any = None,
        **unsupported: Any,
    ) -> None:
        self.config = resolve_config(
            self._signal,
            endpoint=endpoint,
            certificate_file=certificate_file,
            client_key_file=client_key_file,
            client_certificate_file=client_certificate_file,
            headers=headers,
            timeout=timeout,
            compression=compression,
        )
        ignored = sorted(name for name, value in unsupported.items() if value is not None)
        if ignored:
            logger.warning("%sthe distro's OTLP/HTTP exporter ignores %s.", PREFIX, ", ".join(ignored))
        encode_spans, encode_logs = _encoders()
        self._encode = encode_spans if self._signal is TRACES else encode_logs  # metrics encode on their own
        self._invalid = ""
        parts = urlsplit(self.config.url)
        self._scheme = parts.scheme.lower()
        self._host = parts.hostname or ""
        try:
            self._port = parts.port or (443 if self._scheme == "https" else 80)
        except ValueError:
            self._port = 0
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if self._scheme not in ("http", "https") or not self._host or not self._port:
            self._invalid = f"the endpoint {self.config.url!r} is not an http:// or https:// URL"
            logger.warning("%sOTLP/HTTP: %s; %s will not be exported.", PREFIX, self._invalid, self._signal.noun)
        self._std = _Stdlib.find()
        self._tls: Any = None
        self._tls_error = ""
        if self._scheme == "https":
            try:
                self._tls = self._tls_context(os.environ)
            except (OSError, ValueError) as error:
                self._tls_error = f"TLS setup failed ({type(error).__name__}: {error})"
                logger.warning("%sOTLP/HTTP: %s; %s will not be exported.", PREFIX, self._tls_error, self._signal.noun)
        self._process = _ProcessState(self._std.allocate_lock)
        self._wake = self._std.allocate_lock()
        self._wake.acquire()  # released once, by shutdown()
        self._shutdown_lock = self._std.allocate_lock()
        self._shutdown = False
        self._next_warning = 0.0
        self._warnings_held = 0
        self._partial_logged = False

    # -- SDK interface ------------------------------------------------------

    def export(self, batch: Sequence[Any]) -> Any:
        """Encode and send ``batch`` within the export timeout; the SDK's result enum."""
        return self.export_until(batch, time.monotonic() + self.config.timeout_s)

    def export_until(self, batch: Sequence[Any], deadline: float) -> Any:
        """Like :meth:`export`, but never past ``deadline`` (a :func:`time.monotonic` value).

        The deadline bounds connecting, sending, waiting for the answer and the
        retries; the export timeout still applies when it comes first.
        """
        outcome = self.send_until(batch, deadline)
        return self._success if outcome.delivered else self._failure

    def send_until(self, batch: Sequence[Any], deadline: float) -> ExportOutcome:
        """Encode and send ``batch``; the detailed :class:`ExportOutcome`."""
        items = len(batch)
        if self._shutdown:
            return ExportOutcome(False, items, error="the exporter is shut down")
        if not items:
            return ExportOutcome(True, 0)
        if self._invalid:
            return self._failed(ExportOutcome(False, items, error=self._invalid))
        try:
            body = self._encode(batch)
        except Exception as error:  # noqa: BLE001 - one bad item must not stop the pipeline
            return self._failed(ExportOutcome(False, items, error=f"encoding failed ({type(error).__name__}: {error})"))
        return self._send_body(body, items, deadline)

    def _send_body(self, body: bytes, items: int, deadline: float) -> ExportOutcome:
        """Compress and send an encoded request; the detailed :class:`ExportOutcome`."""
        if len(body) > MAX_REQUEST_BYTES:
            return self._failed(
                ExportOutcome(False, items, error=f"the request is {len(body)} bytes, over {MAX_REQUEST_BYTES}")
            )
        if self.config.compression == "gzip":
            body = gzip.compress(body, compresslevel=6, mtime=0)
        elif self.config.compression == "deflate":
            body = zlib.compress(body)
        outcome = self._send(body, items, min(deadline, time.monotonic() + self.config.timeout_s))
        return outcome if outcome.delivered else self._failed(outcome)

    def shutdown(self) -> None:
        """Stop exporting; cut a backoff short; close the connection. Idempotent and thread-safe."""
        with self._shutdown_lock:
            if self._shutdown:
                return
            self._shutdown = True
        self._wake.release()
        state = self._process
        if state.pid != os.getpid():
            _forget_inherited(state.connection)
            state.connection = None
        elif state.busy.acquire(False):  # else the thread exporting closes it when done
            try:
                if state.connection is not None:
                    state.connection.close()
                    state.connection = None
            finally:
                state.busy.release()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered here."""
        return True

    # -- sending ------------------------------------------------------------

    def _state(self) -> _ProcessState:
        state = self._process
        if state.pid != os.getpid():
            inherited = state
            state = self._process = _ProcessState(self._std.allocate_lock)
            _forget_inherited(inherited.connection)
        return state

    def _tls_context(self, environ: Mapping[str, str]) -> Any:
        """The original ``SSLContext``, built where the exporter is built (it may import certifi)."""
        context = self._std.ssl_context_class(ssl.PROTOCOL_TLS_CLIENT)
        authority = self.config.certificate_file or _ca_bundle(environ)
        if authority and os.path.isdir(authority):
            context.load_verify_locations(capath=authority)
        elif authority:
            context.load_verify_locations(cafile=authority)
        else:
            context.load_default_certs()
            bundle = _certifi_bundle()
            if bundle:
                context.load_verify_locations(cafile=bundle)
        if self.config.client_certificate_file:
            context.load_cert_chain(self.config.client_certificate_file, self.config.client_key_file)
        return context

    def _send(self, body: bytes, items: int, deadline: float) -> ExportOutcome:
        if self._tls_error:
            return ExportOutcome(False, items, error=self._tls_error)
        tls = self._tls
        state = self._state()
        own = state.busy.acquire(False)
        # Another thread is using the keep-alive connection: use a one-off one.
        connection = state.connection if own else None
        if connection is None:
            connection = _Connection(self._host, self._port, tls, self._std.socket_class)
        attempts = 0
        try:
            while True:
                attempts += 1
                attempt = self._attempt(connection, body, deadline)
                if attempt.stale and time.monotonic() < deadline:
                    attempt = self._attempt(connection, body, deadline)  # a fresh connection, at once
                if attempt.status is not None and 200 <= attempt.status < 300:
                    return self._delivered(attempt, items, attempts)
                wait, why = self._backoff(attempt, attempts, deadline)
                if wait is None or self._wait(wait):
                    return ExportOutcome(False, items, attempts, attempt.status, error=f"{attempt.error}; {why}")
        finally:
            if own:
                if self._shutdown:
                    connection.close()
                    state.connection = None
                else:
                    state.connection = connection
                state.busy.release()
            else:
                connection.close()

    def _attempt(self, connection: _Connection, body: bytes, deadline: float) -> _Attempt:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return _Attempt(None, error="no time left")
        reused = connection.sock is not None
        connection.deadline = deadline
        answered = False
        try:
            if connection.sock is not None:
                connection.sock.settimeout(remaining)
            connection.request("POST", self._target, body, dict(self.config.headers))
            connection.sock.settimeout(max(0.001, deadline - time.monotonic()))  # type: ignore[union-attr]
            response = connection.getresponse()
            answered = True
            data = response.read()
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            timed_out = isinstance(error, TimeoutError)
            certificate = type(error).__name__ == "SSLCertVerificationError"
            return _Attempt(
                None,
                error=f"{type(error).__name__}: {error}" if str(error) else type(error).__name__,
                retryable=not certificate and time.monotonic() < deadline,
                stale=reused and not answered and not timed_out,
            )
        status = response.status
        if 200 <= status < 300:
            return _Attempt(status, data)
        return _Attempt(
            status,
            data,
            retry_after=response.getheader("Retry-After"),
            error=f"HTTP {status} {response.reason}"
            + (f" ({_one_line(data.decode('utf-8', 'replace'))})" if data else ""),
            retryable=status in RETRYABLE_STATUSES,
        )

    @staticmethod
    def _backoff(attempt: _Attempt, attempts: int, deadline: float) -> tuple[float | None, str]:
        """How long to wait before the next attempt (None: give up), and the reason to give if stopped."""
        if not attempt.retryable:
            return None, "not retried"
        wait = retry_after_seconds(attempt.retry_after) if attempt.status is not None else None
        if wait is None:
            wait = BACKOFF_BASE_S * 2 ** (attempts - 1) * random.uniform(1 - BACKOFF_JITTER, 1 + BACKOFF_JITTER)
        if attempts >= MAX_ATTEMPTS:
            return None, f"gave up after {attempts} attempts"
        if wait >= deadline - time.monotonic():
            return None, f"no time left to retry after {attempts} attempt{'s' * (attempts > 1)}"
        return wait, "shut down while waiting to retry"

    def _wait(self, seconds: float) -> bool:
        """Sleep on a native lock; True when :meth:`shutdown` cut it short."""
        if self._wake.acquire(True, max(0.0, seconds)):
            self._wake.release()  # leave it open for every later waiter
            return True
        return False

    # -- results and log lines ------------------------------------------------

    def _delivered(self, attempt: _Attempt, items: int, attempts: int) -> ExportOutcome:
        rejected, message = parse_partial_success(attempt.body) if attempt.body else (0, "")
        if (rejected or message) and not self._partial_logged:
            self._partial_logged = True
            logger.warning(
                "%sthe collector at %s accepted an export partially: %d of %d %s rejected%s (logged once).",
                PREFIX,
                self.config.url,
                rejected,
                items,
                self._signal.noun,
                f": {_one_line(message)}" if message else "",
            )
        return ExportOutcome(True, items, attempts, attempt.status, rejected=max(0, rejected))

    def _failed(self, outcome: ExportOutcome) -> ExportOutcome:
        now = time.monotonic()
        if now < self._next_warning:
            self._warnings_held += 1
            return outcome
        self._next_warning = now + WARNING_INTERVAL_S
        held, self._warnings_held = self._warnings_held, 0
        logger.warning(
            "%sOTLP/HTTP export of %d %s to %s failed: %s.%s",
            PREFIX,
            outcome.items,
            self._signal.noun,
            self.config.url,
            outcome.error,
            f" ({held} more failed exports not shown)" if held else "",
        )
        return outcome


class OtlpHttpSpanExporter(_OtlpHttpExporter, SpanExporter):
    """OTLP/HTTP span exporter; ``export_until(spans, deadline)`` bounds one export."""

    _signal = TRACES
    _success = SpanExportResult.SUCCESS
    _failure = SpanExportResult.FAILURE


class OtlpHttpLogExporter(_OtlpHttpExporter, _LogExporterBase):  # type: ignore[misc,valid-type]
    """OTLP/HTTP log record exporter; ``export_until(records, deadline)`` bounds one export."""

    _signal = LOGS
    _success = _LogExportResult.SUCCESS
    _failure = _LogExportResult.FAILURE
