"""A minimal stand-in for the Datadog trace agent: accepts traces on 127.0.0.1 and counts them.

Used by ``ddtrace_reference.py`` as the receiving end of dd-trace-py's agent
writer, the way ``python -m tests.receiver`` is the receiving end of the OTLP
exporters. It answers ``PUT``/``POST`` on ``/v0.4/traces`` and ``/v0.5/traces``
with ``200`` and the body ``{}`` (no sampling rates), and ``404`` on any other
path (the tracer then goes on without the agent's optional features).

While the tracer runs, the agent only keeps the bodies; it decodes them (a
small msgpack reader, standard library only) when it stops, so its own CPU
does not compete with the measured process for the machine's cores. Then it
counts traces and spans and checks every span: it must carry ``--expect-tags``
(the tag names of a measured span) among its string tags (``meta``) and
numeric tags (``metrics``).

    python fake_trace_agent.py [--expect-tags a,b,c]

prints ``{"url": "http://127.0.0.1:PORT"}`` once listening, serves until its
stdin closes, then prints ``{"summary": {...}}`` and leaves.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRACE_PATHS = ("/v0.4/traces", "/v0.5/traces")


#: One-byte headers: (first byte, last byte, kind); the size (or value) is the byte minus the first.
FIXED_RANGES = (
    (0x00, 0x7F, "int"),
    (0xE0, 0xFF, "negative"),
    (0xA0, 0xBF, "str"),
    (0x90, 0x9F, "array"),
    (0x80, 0x8F, "map"),
)
CONSTANTS = {0xC0: None, 0xC2: False, 0xC3: True}
NUMBERS = {
    0xCA: ">f",
    0xCB: ">d",
    0xCC: ">B",
    0xCD: ">H",
    0xCE: ">I",
    0xCF: ">Q",
    0xD0: ">b",
    0xD1: ">h",
    0xD2: ">i",
    0xD3: ">q",
}
#: Headers followed by a size: byte -> (size format, kind).
SIZED = {
    0xC4: (">B", "bin"),
    0xC5: (">H", "bin"),
    0xC6: (">I", "bin"),
    0xD9: (">B", "str"),
    0xDA: (">H", "str"),
    0xDB: (">I", "str"),
    0xDC: (">H", "array"),
    0xDD: (">I", "array"),
    0xDE: (">H", "map"),
    0xDF: (">I", "map"),
}


class MsgpackReader:
    """Decodes one msgpack value from ``data`` (no extension types: a trace payload has none)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        if len(chunk) != size:
            raise ValueError("truncated msgpack")
        self.pos += size
        return chunk

    def _unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def _header(self, byte: int) -> tuple[str, Any]:
        """The kind of the value that starts with ``byte``, and its size (or the value itself)."""
        for first, last, kind in FIXED_RANGES:
            if first <= byte <= last:
                return kind, byte - first
        if byte in CONSTANTS:
            return "value", CONSTANTS[byte]
        if byte in NUMBERS:
            return "value", self._unpack(NUMBERS[byte])
        if byte in SIZED:
            fmt, kind = SIZED[byte]
            return kind, self._unpack(fmt)
        raise ValueError(f"unsupported msgpack byte 0x{byte:02x}")

    def value(self) -> Any:
        kind, size = self._header(self._take(1)[0])
        if kind in ("int", "value"):
            return size
        if kind == "negative":
            return size - 32
        if kind in ("str", "bin"):
            raw = self._take(size)
            return raw.decode() if kind == "str" else raw
        if kind == "array":
            return [self.value() for _ in range(size)]
        return {self.value(): self.value() for _ in range(size)}


def spans_of(path: str, body: bytes) -> list[dict[str, Any]]:
    """The spans of one payload, as ``{"name", "service", "meta", "metrics"}`` dicts.

    v0.4: an array of traces, each an array of span maps. v0.5: ``[strings,
    traces]``, each span a 12-item array whose strings are indexes into
    ``strings`` (service, name, resource, trace_id, span_id, parent_id, start,
    duration, error, meta, metrics, type).
    """
    payload = MsgpackReader(body).value()
    spans: list[dict[str, Any]] = []
    if path == "/v0.4/traces":
        for trace in payload:
            for span in trace:
                spans.append(
                    {
                        "name": span.get("name"),
                        "service": span.get("service"),
                        "meta": dict(span.get("meta") or {}),
                        "metrics": dict(span.get("metrics") or {}),
                    }
                )
        return spans
    strings, traces = payload
    for trace in traces:
        for span in trace:
            meta = {strings[k]: strings[v] for k, v in span[9].items()}
            metrics = {strings[k]: v for k, v in span[10].items()}
            spans.append({"name": strings[span[1]], "service": strings[span[0]], "meta": meta, "metrics": metrics})
    return spans


def traces_in(path: str, body: bytes) -> int:
    payload = MsgpackReader(body).value()
    return len(payload) if path == "/v0.4/traces" else len(payload[1])


class Agent:
    """The server and what it received (bodies kept until :meth:`summary`)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bodies: list[tuple[str, bytes, int]] = []
        self.requests: Counter[str] = Counter()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _traces(self) -> None:
                path = self.path.split("?", 1)[0]
                body = self._body()
                with agent.lock:
                    agent.requests[f"{self.command} {path}"] += 1
                    if path in TRACE_PATHS:
                        declared = int(self.headers.get("X-Datadog-Trace-Count") or -1)
                        agent.bodies.append((path, body, declared))
                self._answer(200 if path in TRACE_PATHS else 404, b"{}")

            do_PUT = do_POST = _traces

            def do_GET(self) -> None:
                with agent.lock:
                    agent.requests[f"GET {self.path}"] += 1
                self._answer(404, b"{}")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def summary(self, expect_tags: list[str]) -> dict[str, Any]:
        """Traces and spans received, and how many spans lack an expected tag."""
        self.server.shutdown()
        with self.lock:
            bodies = list(self.bodies)
            requests = dict(self.requests)
        traces = spans = declared = incomplete = 0
        names: Counter[str] = Counter()
        errors: list[str] = []
        for path, body, count in bodies:
            try:
                received = spans_of(path, body)
                traces += traces_in(path, body)
            except (ValueError, KeyError, IndexError, TypeError, UnicodeDecodeError) as exc:
                errors.append(f"{path}: {type(exc).__name__}: {exc}")
                continue
            declared += max(count, 0)
            spans += len(received)
            for span in received:
                names[str(span["name"])] += 1
                tags = span["meta"].keys() | span["metrics"].keys()
                incomplete += any(tag not in tags for tag in expect_tags)
        return {
            "traces": traces,
            "declared_traces": declared,
            "spans": spans,
            "spans_missing_tags": incomplete,
            "span_names": dict(names),
            "requests": requests,
            "decode_errors": errors[:5],
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--expect-tags", default="", help="comma list of tags every span must carry")
    args = parser.parse_args(argv)
    agent = Agent()
    print(json.dumps({"url": agent.url}), flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    expect = [tag for tag in args.expect_tags.split(",") if tag]
    print(json.dumps({"summary": agent.summary(expect)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
