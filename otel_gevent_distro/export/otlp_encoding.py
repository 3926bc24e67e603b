"""OTLP protobuf encoding of finished spans and log records, written straight in the wire format.

Owns the bytes of opentelemetry-proto's ``ExportTraceServiceRequest`` and
``ExportLogsServiceRequest`` for what the SDK hands a span exporter
(``ReadableSpan``) and a log exporter (``ReadableLogRecord``; the older
``LogData`` shape too). No protobuf library is used at run time: building a
message object per span, attribute and value and then serialising it is most
of what exporting costs, and in a gevent process that CPU is taken from the
hub that serves the requests.

Invariants, and why:

* **Upstream's message, exactly.** Parsing these bytes gives the message that
  ``opentelemetry-exporter-otlp-proto-common`` builds for the same input, odd
  cases included, so switching encoders changes nothing a collector sees:

  - ``None`` (as a value, in a sequence or in a map) is an empty ``AnyValue``;
    a log body of ``None`` is an empty body that is present. This is what
    upstream does since it stopped special-casing ``None`` (1.45 does; 1.40
    left such span attributes out, and log bodies and values unset); the
    distro writes it so whatever SDK is installed;
  - values are tried in upstream's order (None, bool, str, int, float, bytes,
    sequence, mapping); map keys go through ``str()``;
  - an attribute that cannot be encoded (an int outside int64, a string with
    a lone surrogate, an unknown type, anywhere inside the value) is left out
    with a warning, the others are kept; anything else that cannot be encoded
    (a span name, a log body) raises, as upstream does;
  - the span and link ``flags`` carry only the HAS_IS_REMOTE bit and, for a
    remote parent or linked context, the IS_REMOTE bit, not the W3C trace
    flags; a link's trace state is not sent; the resource's and the scope's
    dropped-attribute counts are not sent;
  - spans and records are grouped by resource (equality, as a dict key), then
    by scope (equality) within it, in first-seen order; the first object seen
    of each group is the one encoded.

  ``tests/test_otlp_encoding.py`` holds this against upstream's encoder.
* **Field-number order.** Every message is written with its fields in
  field-number order, which is what upb writes too, so the bytes are usually
  identical to upstream's, not only the parsed messages.
* **Constant parts once.** A resource's and a scope's fields are encoded once
  per batch and kept in small caches across batches, keyed by ``id()`` and
  holding the object itself, so that an id cannot be reused by another object
  while its entry lives. This relies on the SDK's resources and scopes being
  immutable (their attributes are immutable ``BoundedAttributes``).
* **Pure.** No I/O, no locks, nothing of gevent: callable from any thread or
  greenlet; the caches only ever hold complete entries.
"""

from __future__ import annotations

import operator
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry._logs import SeverityNumber
from opentelemetry.trace import SpanKind, StatusCode

from otel_gevent_distro._log import PREFIX, logger

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["encode_logs", "encode_spans"]

# --------------------------------------------------------------------------
# Wire-format primitives
# --------------------------------------------------------------------------

_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

_pack_double = struct.Struct("<d").pack
_pack_fixed64 = struct.Struct("<Q").pack
_pack_fixed32 = struct.Struct("<I").pack

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_TWO_TO_64 = 1 << 64

#: The varints of 0..127, one byte each.
_SMALL = tuple(bytes((n,)) for n in range(128))


def _varint(value: int) -> bytes:
    """The base-128 varint of a non-negative int (a negative one raises ``ValueError``)."""
    if 0 <= value < 0x80:
        return _SMALL[value]
    if 0 <= value < 0x4000:
        return bytes((value & 0x7F | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)  # a negative value ends up here and raises
    return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return _varint(field << 3 | wire_type)


# Tags, named after message and field (opentelemetry-proto).
_REQUEST_RESOURCE = _tag(1, _LEN)  # ExportTrace/LogsServiceRequest.resource_spans / resource_logs

_RESOURCE_GROUP_RESOURCE = _tag(1, _LEN)  # ResourceSpans/ResourceLogs.resource
_RESOURCE_GROUP_SCOPE_GROUP = _tag(2, _LEN)  # .scope_spans / .scope_logs
_RESOURCE_GROUP_SCHEMA_URL = _tag(3, _LEN)
_RESOURCE_ATTRIBUTE = _tag(1, _LEN)  # Resource.attributes

_SCOPE_GROUP_SCOPE = _tag(1, _LEN)  # ScopeSpans/ScopeLogs.scope
_SCOPE_GROUP_ITEM = _tag(2, _LEN)  # .spans / .log_records
_SCOPE_GROUP_SCHEMA_URL = _tag(3, _LEN)
_SCOPE_NAME = _tag(1, _LEN)  # InstrumentationScope
_SCOPE_VERSION = _tag(2, _LEN)
_SCOPE_ATTRIBUTE = _tag(3, _LEN)

_SPAN_TRACE_ID = _tag(1, _LEN) + _varint(16)  # Span, with the fixed lengths of the ids
_SPAN_SPAN_ID = _tag(2, _LEN) + _varint(8)
_SPAN_TRACE_STATE = _tag(3, _LEN)
_SPAN_PARENT_SPAN_ID = _tag(4, _LEN) + _varint(8)
_SPAN_NAME = _tag(5, _LEN)
_SPAN_KIND = _tag(6, _VARINT)
_SPAN_START = _tag(7, _FIXED64)
_SPAN_END = _tag(8, _FIXED64)
_SPAN_ATTRIBUTE = _tag(9, _LEN)
_SPAN_DROPPED_ATTRIBUTES = _tag(10, _VARINT)
_SPAN_EVENT = _tag(11, _LEN)
_SPAN_DROPPED_EVENTS = _tag(12, _VARINT)
_SPAN_LINK = _tag(13, _LEN)
_SPAN_DROPPED_LINKS = _tag(14, _VARINT)
_SPAN_STATUS = _tag(15, _LEN)
_SPAN_FLAGS = _tag(16, _FIXED32)

_EVENT_TIME = _tag(1, _FIXED64)  # Span.Event
_EVENT_NAME = _tag(2, _LEN)
_EVENT_ATTRIBUTE = _tag(3, _LEN)
_EVENT_DROPPED_ATTRIBUTES = _tag(4, _VARINT)

_LINK_TRACE_ID = _tag(1, _LEN) + _varint(16)  # Span.Link
_LINK_SPAN_ID = _tag(2, _LEN) + _varint(8)
_LINK_ATTRIBUTE = _tag(4, _LEN)
_LINK_DROPPED_ATTRIBUTES = _tag(5, _VARINT)
_LINK_FLAGS = _tag(6, _FIXED32)

_STATUS_MESSAGE = _tag(2, _LEN)  # Status
_STATUS_CODE = _tag(3, _VARINT)

_LOG_TIME = _tag(1, _FIXED64)  # LogRecord
_LOG_SEVERITY_NUMBER = _tag(2, _VARINT)
_LOG_SEVERITY_TEXT = _tag(3, _LEN)
_LOG_BODY = _tag(5, _LEN)
_LOG_ATTRIBUTE = _tag(6, _LEN)
_LOG_DROPPED_ATTRIBUTES = _tag(7, _VARINT)
_LOG_FLAGS = _tag(8, _FIXED32)
_LOG_TRACE_ID = _tag(9, _LEN) + _varint(16)
_LOG_SPAN_ID = _tag(10, _LEN) + _varint(8)
_LOG_OBSERVED_TIME = _tag(11, _FIXED64)
_LOG_EVENT_NAME = _tag(12, _LEN)

_KEY_VALUE_KEY = _tag(1, _LEN)  # KeyValue
_KEY_VALUE_VALUE = _tag(2, _LEN)
_LIST_ITEM = _tag(1, _LEN)  # ArrayValue.values, KeyValueList.values

_ANY_STRING = _tag(1, _LEN)  # AnyValue (a oneof: a default value is still written)
_ANY_TRUE = _tag(2, _VARINT) + b"\x01"
_ANY_FALSE = _tag(2, _VARINT) + b"\x00"
_ANY_INT = _tag(3, _VARINT)
_ANY_DOUBLE = _tag(4, _FIXED64)
_ANY_ARRAY = _tag(5, _LEN)
_ANY_KVLIST = _tag(6, _LEN)
_ANY_BYTES = _tag(7, _LEN)

#: SpanFlags: SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK, and with SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK.
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_SPAN_FLAGS_LOCAL = _SPAN_FLAGS + _pack_fixed32(_HAS_IS_REMOTE)
_SPAN_FLAGS_REMOTE = _SPAN_FLAGS + _pack_fixed32(_HAS_IS_REMOTE | _IS_REMOTE)
_LINK_FLAGS_LOCAL = _LINK_FLAGS + _pack_fixed32(_HAS_IS_REMOTE)
_LINK_FLAGS_REMOTE = _LINK_FLAGS + _pack_fixed32(_HAS_IS_REMOTE | _IS_REMOTE)

#: id(SpanKind member) -> the whole ``kind`` field (the proto's values are the SDK's plus one).
#: By identity, because hashing an enum member is a Python-level call; the members never go away.
_KIND_FIELD = {id(kind): _SPAN_KIND + _varint(kind.value + 1) for kind in SpanKind}


def _length_delimited(tag: bytes, body: bytes) -> bytes:
    return tag + _varint(len(body)) + body


def _string_field(tag: bytes, text: str | None) -> bytes:
    """A proto3 string field: nothing for ``None`` or an empty string."""
    if not text:
        return b""
    data = text.encode()
    return tag + _varint(len(data)) + data


# --------------------------------------------------------------------------
# Values and attributes
# --------------------------------------------------------------------------

#: Attribute key -> its encoded ``KeyValue.key`` field. Keys repeat on every span.
_KEY_FIELDS: dict[str, bytes] = {}
_KEY_FIELDS_LIMIT = 4096

#: Keys already warned about, so a bad attribute on every span logs once.
_WARNED_KEYS: set[str] = set()
_WARNED_KEYS_LIMIT = 100


def _key_field(key: str) -> bytes:
    field = _KEY_FIELDS.get(key)
    if field is None:
        data = str.encode(key)  # raises for a key that is not a str, or has a lone surrogate
        field = _KEY_VALUE_KEY + _varint(len(data)) + data if data else b""
        if len(_KEY_FIELDS) >= _KEY_FIELDS_LIMIT:
            _KEY_FIELDS.clear()
        _KEY_FIELDS[key] = field
    return field


def _int64(value: int) -> bytes:
    """The varint of an int64 (two's complement, ten bytes when negative)."""
    if value < 0:
        if value < _INT64_MIN:
            raise ValueError(f"int {value} is outside int64")
        return _varint(value + _TWO_TO_64)
    if value > _INT64_MAX:
        raise ValueError(f"int {value} is outside int64")
    return _varint(value)


def _any_value(value: Any) -> bytes:
    """The body of the ``AnyValue`` message for ``value``; raises for what upstream cannot encode."""
    kind = type(value)
    if kind is str:
        data = value.encode()
        return _ANY_STRING + _varint(len(data)) + data
    if kind is int:
        return _ANY_INT + (_SMALL[value] if 0 <= value < 0x80 else _int64(value))
    if kind is bool:
        return _ANY_TRUE if value else _ANY_FALSE
    if kind is float:
        return _ANY_DOUBLE + _pack_double(value)
    return _any_value_checked(value)


def _any_value_checked(value: Any) -> bytes:  # noqa: PLR0911 - one return per type
    """:func:`_any_value` for the other types, tested in upstream's order (subclasses, containers)."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _ANY_TRUE if value else _ANY_FALSE
    if isinstance(value, str):
        return _length_delimited(_ANY_STRING, str.encode(value))
    if isinstance(value, int):
        return _ANY_INT + _int64(operator.index(value))
    if isinstance(value, float):
        return _ANY_DOUBLE + _pack_double(value)
    if isinstance(value, bytes):
        return _length_delimited(_ANY_BYTES, bytes(value))
    if isinstance(value, Sequence):
        items = [_length_delimited(_LIST_ITEM, _any_value(item)) for item in value]
        return _length_delimited(_ANY_ARRAY, b"".join(items))
    if isinstance(value, Mapping):
        pairs = [_length_delimited(_LIST_ITEM, _key_value(str(key), item)) for key, item in value.items()]
        return _length_delimited(_ANY_KVLIST, b"".join(pairs))
    raise TypeError(f"cannot encode a value of type {type(value).__name__}")


def _key_value(key: str, value: Any) -> bytes:
    """The body of a ``KeyValue`` message (its value is always present, empty for ``None``)."""
    body = _any_value(value)
    return _key_field(key) + _KEY_VALUE_VALUE + _varint(len(body)) + body


#: Exact type -> (key, value) -> the encoded ``KeyValue`` body with its length in front: most
#: attributes repeat from span to span (method, route, host, status code, flags). One cache per
#: type, so that equal values of different types (1, True) never share an entry; only types whose
#: equal values encode alike (not float: 0.0 == -0.0), and strings of up to 64 characters.
_PAIRS: dict[type, dict[tuple[str, Any], bytes]] = {str: {}, int: {}, bool: {}}
_PAIRS_LIMIT = 2048
_PAIR_VALUE_LIMIT = 64


#: For a string value of up to 123 bytes, everything between the key and the string's bytes:
#: the value's tag and length, the AnyValue's tag and the string's length, all one byte each.
_SHORT_STRING_VALUE = tuple(_KEY_VALUE_VALUE + _SMALL[n + 2] + _ANY_STRING + _SMALL[n] for n in range(124))


def _pair(key: str, value: Any) -> bytes:
    """The ``KeyValue`` body of an attribute, with its length in front."""
    key_field = _KEY_FIELDS.get(key)
    if key_field is None:
        key_field = _key_field(key)
    if type(value) is str:  # the most common, and the most often new (paths, ids)
        data = value.encode()
        size = len(data)
        if size < 124:
            body = key_field + _SHORT_STRING_VALUE[size] + data
            size = len(body)
            return (_SMALL[size] if size < 0x80 else _varint(size)) + body
    value_body = _any_value(value)
    body = key_field + _KEY_VALUE_VALUE + _varint(len(value_body)) + value_body
    return _varint(len(body)) + body


def _attributes(tag: bytes, attributes: Any) -> bytes:
    """Every attribute as a ``KeyValue`` field with ``tag``; one that cannot be encoded is left out.

    Runs for every attribute of every span, event, link and record, hence the
    cache of the common pairs.
    """
    if attributes is None:
        return b""
    # On the SDK's BoundedAttributes (behind a span's read-only proxy too) copy() is a plain dict
    # copy, which spares a Python-level __len__, a lock and a Python-level __getitem__ per key.
    copy = getattr(attributes, "copy", None)
    if copy is not None:
        attributes = copy()
    if not attributes:
        return b""
    caches = _PAIRS
    fields = []
    for key, value in attributes.items():
        kind = type(value)
        try:
            pairs = caches.get(kind)
            encoded = None if pairs is None else pairs.get((key, value))
            if encoded is None:
                encoded = _pair(key, value)
                if pairs is not None and (kind is not str or len(value) <= _PAIR_VALUE_LIMIT):
                    if len(pairs) >= _PAIRS_LIMIT:
                        pairs.clear()
                    pairs[key, value] = encoded
        except Exception as exc:  # noqa: BLE001 - as upstream: leave this attribute out, keep the others
            _warn_dropped(key, exc)
            continue
        fields.append(tag + encoded)
    return b"".join(fields)


def _warn_dropped(key: Any, exc: Exception) -> None:
    name = repr(key)
    if name in _WARNED_KEYS or len(_WARNED_KEYS) >= _WARNED_KEYS_LIMIT:
        return
    _WARNED_KEYS.add(name)
    logger.warning(
        "%sleft out attribute %s: its value cannot be encoded (%s: %s); reported once per key",
        PREFIX,
        name,
        type(exc).__name__,
        exc,
    )


# --------------------------------------------------------------------------
# Resources and scopes: encoded once, cached by identity
# --------------------------------------------------------------------------

_CACHE_LIMIT = 64
#: id(resource) -> (resource, its ``resource`` field, its ``schema_url`` field).
_RESOURCE_CACHE: dict[int, tuple[Any, bytes, bytes]] = {}
#: id(scope) -> (scope, its ``scope`` field, its ``schema_url`` field).
_SCOPE_CACHE: dict[int, tuple[Any, bytes, bytes]] = {}
#: ``ScopeSpans.scope`` when a span has no scope: an empty message, present.
_NO_SCOPE = (_SCOPE_GROUP_SCOPE + _varint(0), b"")


def _resource_fields(resource: Any) -> tuple[bytes, bytes]:
    """``ResourceSpans``/``ResourceLogs``: the ``resource`` field and the ``schema_url`` field."""
    cached = _RESOURCE_CACHE.get(id(resource))
    if cached is not None and cached[0] is resource:
        return cached[1], cached[2]
    head = _length_delimited(_RESOURCE_GROUP_RESOURCE, _attributes(_RESOURCE_ATTRIBUTE, resource.attributes))
    tail = _string_field(_RESOURCE_GROUP_SCHEMA_URL, resource.schema_url)
    if len(_RESOURCE_CACHE) >= _CACHE_LIMIT:
        _RESOURCE_CACHE.clear()
    _RESOURCE_CACHE[id(resource)] = (resource, head, tail)
    return head, tail


def _scope_fields(scope: Any) -> tuple[bytes, bytes]:
    """``ScopeSpans``/``ScopeLogs``: the ``scope`` field and the ``schema_url`` field."""
    if scope is None:
        return _NO_SCOPE
    cached = _SCOPE_CACHE.get(id(scope))
    if cached is not None and cached[0] is scope:
        return cached[1], cached[2]
    body = (
        _string_field(_SCOPE_NAME, scope.name)
        + _string_field(_SCOPE_VERSION, scope.version)
        + _attributes(_SCOPE_ATTRIBUTE, scope.attributes)
    )
    head = _length_delimited(_SCOPE_GROUP_SCOPE, body)
    tail = _string_field(_SCOPE_GROUP_SCHEMA_URL, scope.schema_url)
    if len(_SCOPE_CACHE) >= _CACHE_LIMIT:
        _SCOPE_CACHE.clear()
    _SCOPE_CACHE[id(scope)] = (scope, head, tail)
    return head, tail


def _group(items: Iterable[Any], place: Callable[[Any], tuple[Any, Any]]) -> dict[Any, dict[Any, list[Any]]]:
    """``resource -> scope -> items`` in first-seen order, both keyed by equality, as upstream groups.

    ``place(item)`` gives the item's resource and scope. Hashing an SDK
    resource serialises its attributes, so each distinct pair of objects is
    looked up by equality only once; the items keep the objects alive for the
    whole call, so their ids stay theirs.
    """
    groups: dict[Any, dict[Any, list[Any]]] = {}
    by_identity: dict[tuple[int, int], list[Any]] = {}
    for item in items:
        resource, scope = place(item)
        members = by_identity.get((id(resource), id(scope)))
        if members is None:
            members = groups.setdefault(resource, {}).setdefault(scope, [])
            by_identity[(id(resource), id(scope))] = members
        members.append(item)
    return groups


def _request(groups: dict[Any, dict[Any, list[Any]]], encode: Callable[[Any], bytes]) -> bytes:
    """The export request: one resource group per resource, one scope group per scope, in order."""
    out: list[bytes] = []
    for resource, scopes in groups.items():
        resource_head, resource_tail = _resource_fields(resource)
        parts = [resource_head]
        for scope, members in scopes.items():
            scope_head, scope_tail = _scope_fields(scope)
            bodies = [scope_head]
            for body in map(encode, members):
                size = len(body)
                bodies += (_SCOPE_GROUP_ITEM, _SMALL[size] if size < 0x80 else _varint(size), body)
            bodies.append(scope_tail)
            scope_group = b"".join(bodies)
            parts += (_RESOURCE_GROUP_SCOPE_GROUP, _varint(len(scope_group)), scope_group)
        parts.append(resource_tail)
        resource_group = b"".join(parts)
        out += (_REQUEST_RESOURCE, _varint(len(resource_group)), resource_group)
    return b"".join(out)


# --------------------------------------------------------------------------
# Spans
# --------------------------------------------------------------------------


def _code_field(code: int) -> bytes:
    return _STATUS_CODE + _varint(code) if code else b""


#: id(StatusCode member) -> the whole ``status`` field without a description (by identity, as kinds).
_BARE_STATUS_FIELDS = {id(code): _length_delimited(_SPAN_STATUS, _code_field(code.value)) for code in StatusCode}


def _status(status: Any) -> bytes:
    """The whole ``status`` field (present even when empty, as upstream sets it)."""
    description = status.description
    if not description:
        field = _BARE_STATUS_FIELDS.get(id(status.status_code))
        if field is not None:
            return field
    body = _string_field(_STATUS_MESSAGE, description) + _code_field(status.status_code.value)
    return _length_delimited(_SPAN_STATUS, body)


def _event_field(event: Any) -> bytes:
    """One whole ``Span.events`` field."""
    timestamp = event.timestamp
    body = (
        (_EVENT_TIME + _pack_fixed64(timestamp) if timestamp else b"")
        + _string_field(_EVENT_NAME, event.name)
        + _attributes(_EVENT_ATTRIBUTE, event.attributes)
    )
    dropped = event.dropped_attributes
    if dropped:
        body += _EVENT_DROPPED_ATTRIBUTES + _varint(dropped)
    size = len(body)
    return _SPAN_EVENT + (_SMALL[size] if size < 0x80 else _varint(size)) + body


def _link(link: Any) -> bytes:
    context = link.context
    parts = [
        _LINK_TRACE_ID,
        context.trace_id.to_bytes(16, "big"),
        _LINK_SPAN_ID,
        context.span_id.to_bytes(8, "big"),
        _attributes(_LINK_ATTRIBUTE, link.attributes),
    ]
    dropped = link.dropped_attributes
    if dropped:
        parts += (_LINK_DROPPED_ATTRIBUTES, _varint(dropped))
    parts.append(_LINK_FLAGS_REMOTE if context.is_remote else _LINK_FLAGS_LOCAL)
    return b"".join(parts)


def _span(span: Any) -> bytes:
    """The body of one ``Span`` message, fields in number order."""
    context = span.get_span_context()
    parts = [_SPAN_TRACE_ID, context.trace_id.to_bytes(16, "big"), _SPAN_SPAN_ID, context.span_id.to_bytes(8, "big")]
    trace_state = context.trace_state
    if trace_state:
        parts.append(_string_field(_SPAN_TRACE_STATE, ",".join([f"{k}={v}" for k, v in trace_state.items()])))
    parent = span.parent
    if parent:
        parts += (_SPAN_PARENT_SPAN_ID, parent.span_id.to_bytes(8, "big"))
        flags = _SPAN_FLAGS_REMOTE if parent.is_remote else _SPAN_FLAGS_LOCAL
    else:
        flags = _SPAN_FLAGS_LOCAL
    name = span.name
    if name:
        data = name.encode()
        parts += (_SPAN_NAME, _varint(len(data)), data)
    parts.append(_KIND_FIELD[id(span.kind)])
    start = span.start_time
    if start:
        parts += (_SPAN_START, _pack_fixed64(start))
    end = span.end_time
    if end:
        parts += (_SPAN_END, _pack_fixed64(end))
    parts.append(_attributes(_SPAN_ATTRIBUTE, span.attributes))
    dropped = span.dropped_attributes
    if dropped:
        parts += (_SPAN_DROPPED_ATTRIBUTES, _varint(dropped))
    parts += map(_event_field, span.events)
    dropped = span.dropped_events
    if dropped:
        parts += (_SPAN_DROPPED_EVENTS, _varint(dropped))
    for link in span.links:
        body = _link(link)
        parts += (_SPAN_LINK, _varint(len(body)), body)
    dropped = span.dropped_links
    if dropped:
        parts += (_SPAN_DROPPED_LINKS, _varint(dropped))
    status = span.status
    if status is not None:
        parts.append(_status(status))
    parts.append(flags)
    return b"".join(parts)


def _span_place(span: Any) -> tuple[Any, Any]:
    return span.resource, span.instrumentation_scope or None


def encode_spans(spans: Sequence[ReadableSpan]) -> bytes:
    """The serialised ``ExportTraceServiceRequest`` for ``spans`` (what upstream's
    ``encode_spans(spans).SerializeToString()`` gives, parsed alike)."""
    return _request(_group(spans, _span_place), _span)


# --------------------------------------------------------------------------
# Log records
# --------------------------------------------------------------------------

_MISSING = object()
#: id(SeverityNumber member) -> the whole ``severity_number`` field (by identity, as span kinds).
_SEVERITY_FIELDS = {
    id(number): _LOG_SEVERITY_NUMBER + _varint(number.value) if number.value else b"" for number in SeverityNumber
}


def _log_record(item: Any) -> bytes:
    """The body of one ``LogRecord`` message from a ``ReadableLogRecord`` (or an older ``LogData``)."""
    record = item.log_record
    parts: list[bytes] = []
    timestamp = record.timestamp
    if timestamp:
        parts += (_LOG_TIME, _pack_fixed64(timestamp))
    severity = record.severity_number
    field = _SEVERITY_FIELDS.get(id(severity))
    if field is not None:
        parts.append(field)
    else:  # None, or not a SeverityNumber: as upstream, its ``value`` if it has one
        number = getattr(severity, "value", None)
        if number:
            parts += (_LOG_SEVERITY_NUMBER, _int64(number))
    parts.append(_string_field(_LOG_SEVERITY_TEXT, record.severity_text))
    body = _any_value(record.body)
    parts += (_LOG_BODY, _varint(len(body)), body)
    parts.append(_attributes(_LOG_ATTRIBUTE, record.attributes))
    dropped: Any = getattr(item, "dropped_attributes", _MISSING)
    if dropped is _MISSING:  # LogData: the count is on the SDK's record
        dropped = record.dropped_attributes
    if dropped:
        parts += (_LOG_DROPPED_ATTRIBUTES, _varint(dropped))
    flags = int(record.trace_flags)
    if flags:
        parts += (_LOG_FLAGS, _pack_fixed32(flags))
    trace_id = record.trace_id
    if trace_id != 0:
        parts += (_LOG_TRACE_ID, trace_id.to_bytes(16, "big"))
    span_id = record.span_id
    if span_id != 0:
        parts += (_LOG_SPAN_ID, span_id.to_bytes(8, "big"))
    observed = record.observed_timestamp
    if observed:
        parts += (_LOG_OBSERVED_TIME, _pack_fixed64(observed))
    parts.append(_string_field(_LOG_EVENT_NAME, getattr(record, "event_name", None)))
    return b"".join(parts)


def _log_place(item: Any) -> tuple[Any, Any]:
    resource = getattr(item, "resource", _MISSING)
    if resource is _MISSING:  # LogData: the resource is on the SDK's record
        resource = item.log_record.resource
    return resource, item.instrumentation_scope or None


def encode_logs(records: Sequence[Any]) -> bytes:
    """The serialised ``ExportLogsServiceRequest`` for what the SDK hands a log exporter.

    ``records`` are ``ReadableLogRecord`` objects (SDK 1.39 and later) or
    ``LogData`` objects (earlier SDKs: the resource and the dropped count live
    on the SDK's ``LogRecord``).
    """
    return _request(_group(records, _log_place), _log_record)
