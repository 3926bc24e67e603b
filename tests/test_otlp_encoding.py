"""Fidelity of the distro's OTLP encoder: the same message as upstream's, for any input.

Every test encodes the same spans or log records with
``otel_gevent_distro.export.otlp_encoding`` and with
``opentelemetry-exporter-otlp-proto-common`` (``encode_*(...).SerializeToString()``),
parses both with opentelemetry-proto's classes and compares the messages
(NaN-safe: through their text form and their deterministic serialisation),
then the raw bytes: the distro writes fields in field-number order, as upb
does, so the bytes are expected to be identical too. Any difference is a bug
in the distro's encoder.

The property tests build arbitrary spans (``ReadableSpan`` directly, so that
every field, dropped counts included, can take any value; and through the
SDK's ``TracerProvider``) and arbitrary log records (``ReadableLogRecord``
directly, and through the SDK's ``LoggerProvider``).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry._logs import LogRecord as ApiLogRecord
from opentelemetry._logs import SeverityNumber
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.common._log_encoder import encode_logs as upstream_encode_logs
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as upstream_encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits, ReadableLogRecord
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
    set_span_in_context,
)

from otel_gevent_distro.export.otlp_encoding import encode_logs, encode_spans

try:
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter as InMemoryLogs
except ImportError:  # older SDKs
    from opentelemetry.sdk._logs.export import InMemoryLogExporter as InMemoryLogs  # type: ignore[no-redef]


def _upstream_writes_none() -> bool:
    """True when upstream's encoder writes ``None`` as an empty value, as the distro's does.

    Older releases (1.40 among them) leave such values out; the distro follows
    the newer rule on every SDK version, so byte-for-byte comparison with an
    older upstream does not apply (the distro's own rule is tested without it).
    """
    request = ExportTraceServiceRequest.FromString(
        upstream_encode_spans([_probe_span({"k": None})]).SerializeToString()
    )
    return bool(request.resource_spans[0].scope_spans[0].spans[0].attributes)


def _probe_span(attributes: dict[str, Any]) -> ReadableSpan:
    context = SpanContext(1, 1, False, TraceFlags(1))
    return ReadableSpan("probe", context, attributes=attributes, resource=Resource({}))


#: Records made with attribute limits warn, as the SDK does; the drops are what is tested.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Log record attributes were dropped"),
    pytest.mark.applies_when(
        _upstream_writes_none(),
        reason="the installed upstream encoder leaves None values out (releases before the distro's reference)",
    ),
]

PROPERTY = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@pytest.fixture(autouse=True, scope="module")
def _quiet_encoders() -> Iterator[None]:
    """Both encoders log every attribute they leave out; the tests make many on purpose."""
    names = ("opentelemetry.exporter.otlp.proto.common", "otel_gevent_distro", "opentelemetry.attributes")
    loggers = [logging.getLogger(name) for name in names]
    levels = [one.level for one in loggers]
    for one in loggers:
        one.setLevel(logging.CRITICAL)
    yield
    for one, level in zip(loggers, levels, strict=True):
        one.setLevel(level)


# --------------------------------------------------------------------------
# Comparison
# --------------------------------------------------------------------------


def assert_same_message(ours: bytes, theirs: bytes, message: Any) -> None:
    """Both parse, to equal messages (NaN-safe), and the bytes are identical."""
    parsed_ours, parsed_theirs = message.FromString(ours), message.FromString(theirs)
    assert str(parsed_ours) == str(parsed_theirs)
    assert parsed_ours.SerializeToString(deterministic=True) == parsed_theirs.SerializeToString(deterministic=True)
    if "nan" not in str(parsed_theirs):
        assert parsed_ours == parsed_theirs
    assert ours == theirs


def check_spans(spans: Sequence[ReadableSpan]) -> None:
    theirs = upstream_encode_spans(spans).SerializeToString()
    assert_same_message(encode_spans(spans), theirs, ExportTraceServiceRequest)


def check_logs(records: Sequence[Any]) -> None:
    theirs = upstream_encode_logs(records).SerializeToString()
    assert_same_message(encode_logs(records), theirs, ExportLogsServiceRequest)


def check_logs_or_both_raise(records: Sequence[Any]) -> None:
    """A body that cannot be encoded (unlike an attribute, which is left out) is an error for both."""
    try:
        theirs = upstream_encode_logs(records).SerializeToString()
    except Exception:  # noqa: BLE001 - upstream raises a bare Exception for an unknown type
        with pytest.raises((TypeError, ValueError, UnicodeEncodeError)):
            encode_logs(records)
        return
    assert_same_message(encode_logs(records), theirs, ExportLogsServiceRequest)


# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

#: Text that UTF-8 can encode (no lone surrogates), any other code point included.
texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
short_texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=4)
#: Strings neither encoder can write: a lone surrogate somewhere.
surrogate_texts = st.builds(lambda a, s, b: a + s + b, short_texts, st.characters(categories=["Cs"]), short_texts)

int64s = st.one_of(
    st.integers(INT64_MIN, INT64_MAX),
    st.sampled_from([0, 1, -1, 127, 128, 2**31 - 1, 2**31, 2**32, INT64_MAX, INT64_MIN, INT64_MAX - 1, INT64_MIN + 1]),
)
#: Ints outside int64: neither encoder can write them.
huge_ints = st.one_of(st.integers(min_value=INT64_MAX + 1), st.integers(max_value=INT64_MIN - 1))
doubles = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, sys.float_info.max]),
)
scalars = st.one_of(st.none(), st.booleans(), texts, int64s, doubles, st.binary(max_size=12))


def homogeneous(element: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Lists and tuples of one type, with ``None`` holes now and then."""
    items = st.lists(st.one_of(element, element, element, st.none()), max_size=5)
    return st.one_of(items, items.map(tuple))


arrays = st.one_of(*(homogeneous(s) for s in (st.booleans(), texts, int64s, doubles, st.binary(max_size=6))))
#: Any ``AnyValue``: scalars, arrays (mixed and nested too), maps with string keys, nested.
any_values = st.recursive(
    st.one_of(scalars, arrays),
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(texts, children, max_size=4),
    ),
    max_leaves=8,
)
#: Values that make the attribute be left out, by both encoders.
bad_values = st.one_of(
    surrogate_texts,
    huge_ints,
    st.lists(huge_ints, min_size=1, max_size=2),
    st.dictionaries(texts, surrogate_texts, min_size=1, max_size=2),
    st.builds(object),
    st.frozensets(st.integers(), max_size=2),
)
attribute_values = st.one_of(scalars, scalars, arrays, arrays, any_values, bad_values)
keys = st.one_of(st.sampled_from(["http.method", "http.route", "server.port", "k", ""]), texts)
raw_attributes = st.dictionaries(keys, attribute_values, max_size=5)


@st.composite
def attribute_containers(draw: st.DrawFn) -> Any:
    """A plain dict, or the SDK's ``BoundedAttributes`` (cleaned, maybe with dropped ones), or ``None``."""
    raw = draw(raw_attributes)
    choice = draw(st.sampled_from(["dict", "bounded", "bounded", "none"]))
    if choice == "dict":
        return raw
    if choice == "none":
        return None
    maxlen = draw(st.one_of(st.none(), st.integers(0, 4)))
    return BoundedAttributes(maxlen=maxlen, attributes=raw, immutable=draw(st.booleans()))


trace_ids = st.one_of(st.integers(1, 2**128 - 1), st.sampled_from([1, 2**128 - 1, 2**64]))
span_ids = st.one_of(st.integers(1, 2**64 - 1), st.sampled_from([1, 2**64 - 1, 2**63]))
trace_state_keys = st.from_regex(r"\A[a-z][a-z0-9_\-*/]{0,6}\Z")
trace_state_values = st.from_regex(r"\A[a-zA-Z0-9.:_-]{1,6}\Z")
trace_states = st.dictionaries(trace_state_keys, trace_state_values, max_size=3).map(
    lambda pairs: TraceState(list(pairs.items()))
)


@st.composite
def span_contexts(draw: st.DrawFn) -> SpanContext:
    return SpanContext(
        trace_id=draw(trace_ids),
        span_id=draw(span_ids),
        is_remote=draw(st.booleans()),
        trace_flags=TraceFlags(draw(st.integers(0, 255))),
        trace_state=draw(trace_states),
    )


timestamps = st.one_of(st.none(), st.just(0), st.integers(1, 2**64 - 1), st.sampled_from([2**63, 2**64 - 1]))
statuses = st.builds(Status, st.sampled_from(list(StatusCode)), st.one_of(st.none(), st.just(""), texts))
events = st.builds(Event, name=texts, attributes=attribute_containers(), timestamp=st.integers(0, 2**64 - 1))
links = st.builds(Link, span_contexts(), attribute_containers())


def bounded(items: st.SearchStrategy[list[Any]]) -> st.SearchStrategy[Any]:
    """A tuple, or the SDK's ``BoundedList`` (which counts what it drops)."""

    def build(values: list[Any], maxlen: int | None) -> Any:
        kept = BoundedList(maxlen)
        kept.extend(values)
        return kept

    return st.one_of(items.map(tuple), st.builds(build, items, st.one_of(st.none(), st.integers(0, 3))))


@st.composite
def resources(draw: st.DrawFn) -> Resource:
    schema_url = draw(st.one_of(st.none(), st.just(""), st.sampled_from(["https://opentelemetry.io/schemas/1.26.0"])))
    return Resource(draw(raw_attributes), schema_url)


@st.composite
def scopes(draw: st.DrawFn) -> InstrumentationScope | None:
    if draw(st.integers(0, 5)) == 0:
        return None
    return InstrumentationScope(
        name=draw(texts),
        version=draw(st.one_of(st.none(), texts)),
        schema_url=draw(st.one_of(st.none(), texts)),
        attributes=draw(st.one_of(st.none(), raw_attributes)),
    )


def twin_resource(resource: Resource) -> Resource:
    """Another object equal to ``resource``: upstream groups the two together."""
    return Resource(dict(resource.attributes), resource.schema_url)


def twin_scope(scope: InstrumentationScope | None) -> InstrumentationScope | None:
    if scope is None:
        return None
    return InstrumentationScope(scope.name, scope.version, scope.schema_url, dict(scope.attributes or {}))


@st.composite
def pools(draw: st.DrawFn) -> tuple[list[Resource], list[InstrumentationScope | None]]:
    """A few resources and scopes for one batch, equal twins included now and then."""
    resource_pool = draw(st.lists(resources(), min_size=1, max_size=3))
    scope_pool = draw(st.lists(scopes(), min_size=1, max_size=3))
    if draw(st.booleans()):
        resource_pool.append(twin_resource(resource_pool[0]))
        scope_pool.append(twin_scope(scope_pool[0]))
    return resource_pool, scope_pool


@st.composite
def span_batches(draw: st.DrawFn) -> list[ReadableSpan]:
    resource_pool, scope_pool = draw(pools())
    batch = []
    for _ in range(draw(st.integers(0, 4))):
        context = draw(span_contexts())
        batch.append(
            ReadableSpan(
                name=draw(texts),
                context=SpanContext(context.trace_id, context.span_id, False, context.trace_flags, context.trace_state),
                parent=draw(st.one_of(st.none(), span_contexts())),
                resource=draw(st.sampled_from(resource_pool)),
                attributes=draw(attribute_containers()),
                events=draw(bounded(st.lists(events, max_size=2))),
                links=draw(bounded(st.lists(links, max_size=2))),
                kind=draw(st.sampled_from(list(SpanKind))),
                status=draw(statuses),
                start_time=draw(timestamps),
                end_time=draw(timestamps),
                instrumentation_scope=draw(st.sampled_from(scope_pool)),
            )
        )
    return batch


severities = st.one_of(st.none(), st.sampled_from(list(SeverityNumber)))
bodies = st.one_of(any_values, st.dictionaries(texts, any_values, max_size=4), st.lists(any_values, max_size=4))


@st.composite
def log_records(draw: st.DrawFn, resource_pool: list[Resource], scope_pool: list[Any]) -> ReadableLogRecord:
    record = ApiLogRecord(
        timestamp=draw(timestamps),
        observed_timestamp=draw(st.integers(1, 2**64 - 1)),
        context=Context(),
        severity_text=draw(st.one_of(st.none(), st.just(""), texts)),
        severity_number=draw(severities),
        body=draw(bodies),
        attributes=draw(attribute_containers()),
        event_name=draw(st.one_of(st.none(), st.just(""), texts)),
    )
    if draw(st.booleans()):  # trace context, as a record made inside a span has it
        record.trace_id = draw(trace_ids)
        record.span_id = draw(span_ids)
        record.trace_flags = TraceFlags(draw(st.integers(0, 255)))
    return ReadableLogRecord(
        log_record=record,
        resource=draw(st.sampled_from(resource_pool)),
        instrumentation_scope=draw(st.sampled_from(scope_pool)),
        limits=LogRecordLimits(),
    )


@st.composite
def log_batches(draw: st.DrawFn) -> list[ReadableLogRecord]:
    resource_pool, scope_pool = draw(pools())
    return draw(st.lists(log_records(resource_pool, scope_pool), max_size=5))


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------


@PROPERTY
@given(span_batches())
def test_any_spans_encode_as_upstream(spans: list[ReadableSpan]) -> None:
    check_spans(spans)


@PROPERTY
@given(log_batches())
def test_any_log_records_encode_as_upstream(records: list[ReadableLogRecord]) -> None:
    check_logs(records)


@PROPERTY
@given(
    attributes=raw_attributes,
    event_attributes=raw_attributes,
    link_attributes=raw_attributes,
    remote=st.booleans(),
    max_attributes=st.integers(0, 8),
    max_events=st.integers(0, 3),
)
def test_sdk_made_spans_encode_as_upstream(
    attributes: dict[str, Any],
    event_attributes: dict[str, Any],
    link_attributes: dict[str, Any],
    remote: bool,
    max_attributes: int,
    max_events: int,
) -> None:
    """Spans as the SDK's tracer makes them: cleaned attributes, limits, remote or local parents."""
    exporter = InMemorySpanExporter()
    limits = SpanLimits(max_span_attributes=max_attributes, max_events=max_events, max_links=2)
    provider = TracerProvider(
        resource=Resource.create({"service.name": "test"}), span_limits=limits, shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests.encoding", "1.0", schema_url="https://example.com/s", attributes={"a": 1})
    other = provider.get_tracer("tests.other")
    parent = SpanContext(0xABC, 0xDEF, is_remote=remote, trace_flags=TraceFlags(1))
    link = Link(SpanContext(0x123, 0x456, is_remote=not remote), link_attributes)
    with tracer.start_as_current_span(
        "parent",
        context=set_span_in_context(NonRecordingSpan(parent)),
        kind=SpanKind.SERVER,
        attributes=attributes,
        links=[link, link, link],
    ) as span:
        for number in range(4):
            span.add_event(f"event {number}", event_attributes)
        span.set_status(Status(StatusCode.ERROR, "failed"))
        with other.start_as_current_span("child", kind=SpanKind.CLIENT) as child:
            child.set_attributes(event_attributes)
    provider.shutdown()
    check_spans(exporter.get_finished_spans())


@PROPERTY
@given(body=bodies, attributes=raw_attributes, severity=severities, in_span=st.booleans())
def test_sdk_made_log_records_encode_as_upstream(
    body: Any, attributes: dict[str, Any], severity: SeverityNumber | None, in_span: bool
) -> None:
    """Log records as the SDK's logger hands them to an exporter."""
    exporter = InMemoryLogs()
    provider = LoggerProvider(resource=Resource.create({"service.name": "test"}), shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("tests.encoding", "2.0", schema_url="https://example.com/s")
    span = SpanContext(0x5B8EFFF798038103D269B633813FC60C, 0xEEE19B7EC3C1B174, False, TraceFlags(1))
    context = set_span_in_context(NonRecordingSpan(span)) if in_span else Context()
    logger.emit(
        body=body,
        severity_number=severity,
        severity_text=severity.name if severity else None,
        attributes=attributes,
        context=context,
        event_name="tests.event" if in_span else None,
    )
    provider.get_logger("tests.other").emit(body="second scope", context=Context())
    provider.shutdown()
    check_logs(exporter.get_finished_logs())


# --------------------------------------------------------------------------
# Examples: edge cases named one by one
# --------------------------------------------------------------------------

CONTEXT = SpanContext(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, False, TraceFlags(1))


def span(**fields: Any) -> ReadableSpan:
    fields.setdefault("name", "span")
    fields.setdefault("context", CONTEXT)
    fields.setdefault("start_time", 1_700_000_000_000_000_000)
    fields.setdefault("end_time", 1_700_000_000_000_500_000)
    return ReadableSpan(**fields)


def test_an_empty_batch_is_an_empty_request() -> None:
    assert encode_spans([]) == b"" == upstream_encode_spans([]).SerializeToString()
    assert encode_logs([]) == b"" == upstream_encode_logs([]).SerializeToString()


VALUES = [
    INT64_MIN,
    INT64_MIN + 1,
    -1,
    0,
    1,
    127,
    128,
    INT64_MAX,
    INT64_MAX + 1,
    INT64_MIN - 1,
    2**64,
    True,
    False,
    math.nan,
    -math.nan,
    math.inf,
    -math.inf,
    -0.0,
    0.0,
    "",
    "é\u2603\U0001f600",
    "\ud800",
    b"",
    b"\x00\xff",
    [],
    (),
    [None],
    [1, None, 3],
    [1, "mixed", 2.5, b"x", True],
    [[1, 2], [3]],
    {"nested": {"deeper": [1, {"k": None}]}},
    {1: "int key", None: "none key"},
    None,
    object(),
    {1, 2},
    "x" * 300,
    list(range(200)),
]


@pytest.mark.parametrize("value", VALUES, ids=[f"{n}-{type(v).__name__}" for n, v in enumerate(VALUES)])
def test_one_attribute_value(value: Any) -> None:
    """Every kind of value, as a span, event, link, resource, scope and log attribute, and as a log body."""
    attributes = {"before": "kept", "value": value, "after": 1}
    resource = Resource(attributes)
    scope = InstrumentationScope("scope", "1", None, attributes)
    link = Link(CONTEXT, attributes)
    one = span(
        attributes=attributes,
        events=[Event("e", attributes, 1)],
        links=[link],
        resource=resource,
        instrumentation_scope=scope,
    )
    check_spans([one])
    record = ApiLogRecord(observed_timestamp=1, context=Context(), attributes=attributes)
    check_logs([ReadableLogRecord(record, resource, scope)])
    body = ApiLogRecord(observed_timestamp=1, context=Context(), body=value)
    check_logs_or_both_raise([ReadableLogRecord(body, resource, scope)])


def test_none_is_an_empty_value_that_is_present() -> None:
    """The distro's own rule, whatever upstream version is installed (older ones left these out)."""
    resource = Resource({})
    record = ApiLogRecord(observed_timestamp=1, context=Context(), attributes={"k": None, "list": [1, None]})
    request = ExportLogsServiceRequest.FromString(encode_logs([ReadableLogRecord(record, resource, None)]))
    [encoded] = request.resource_logs[0].scope_logs[0].log_records
    assert encoded.HasField("body") and encoded.body.WhichOneof("value") is None
    none_value, array = encoded.attributes
    assert none_value.key == "k" and none_value.HasField("value") and none_value.value.WhichOneof("value") is None
    assert [item.WhichOneof("value") for item in array.value.array_value.values] == ["int_value", None]


def test_the_same_key_with_values_of_different_types() -> None:
    """1, True, 1.0 and -0.0/0.0 are equal in Python; none may be taken for another (cached pairs)."""
    values = [1, True, 1.0, "1", b"1", 0, False, 0.0, -0.0, [1], (1,), [True]]
    check_spans([span(attributes={"same": value}) for value in values])
    check_spans([span(attributes={"same": value}) for value in reversed(values)])


@pytest.mark.parametrize("remote", [None, False, True])
def test_parent_and_its_remote_flag(remote: bool | None) -> None:
    parent = None if remote is None else SpanContext(CONTEXT.trace_id, 0x1234, remote, TraceFlags(1))
    check_spans([span(parent=parent)])


def test_flags_carry_the_remote_bits_only() -> None:
    parent = SpanContext(CONTEXT.trace_id, 0x1234, True, TraceFlags(1))
    links = [Link(SpanContext(1, 2, True, TraceFlags(1))), Link(SpanContext(3, 4, False, TraceFlags(0)))]
    [spans] = ExportTraceServiceRequest.FromString(encode_spans([span(parent=parent, links=links)])).resource_spans
    encoded = spans.scope_spans[0].spans[0]
    assert encoded.flags == 0x300
    assert [link.flags for link in encoded.links] == [0x300, 0x100]
    check_spans([span(parent=parent, links=links)])


def test_trace_state_status_kind_times_and_dropped_counts() -> None:
    state = TraceState([("vendor", "value"), ("other", "x:y")])
    context = SpanContext(CONTEXT.trace_id, CONTEXT.span_id, False, TraceFlags(1), state)
    attributes = BoundedAttributes(maxlen=2, attributes={"a": 1, "b": 2, "c": 3})
    events_ = BoundedList(1)
    events_.extend([Event("first", {"x": 1}, 5), Event("second", BoundedAttributes(1, {"y": 1, "z": 2}), 6)])
    links_ = BoundedList(1)
    links_.extend([Link(CONTEXT, BoundedAttributes(1, {"p": 1, "q": 2})), Link(CONTEXT)])
    for kind in SpanKind:
        for status in (Status(), Status(StatusCode.OK), Status(StatusCode.ERROR, "it failed \u2603")):
            one = span(context=context, attributes=attributes, events=events_, links=links_, kind=kind, status=status)
            check_spans([one])
    check_spans([span(start_time=None, end_time=None), span(start_time=0, end_time=2**64 - 1), span(name="")])


def test_several_resources_and_scopes_are_grouped_as_upstream_groups_them() -> None:
    first, first_twin = Resource({"service.name": "a"}), Resource({"service.name": "a"})
    second = Resource({"service.name": "b"}, "https://opentelemetry.io/schemas/1.26.0")
    reordered = Resource({"k": 1, "j": 2})  # equal to the next one: the order of attributes does not count
    reordered_twin = Resource({"j": 2, "k": 1})
    scope_a = InstrumentationScope("a", "1", "https://example.com/a", {"x": 1})
    scope_a_twin = InstrumentationScope("a", "1", "https://example.com/a", {"x": 1})
    scope_b = InstrumentationScope("b")
    order = [
        (second, scope_b),
        (first, scope_a),
        (first_twin, scope_a_twin),
        (second, None),
        (first, scope_b),
        (reordered, scope_a),
        (reordered_twin, scope_a),
        (first_twin, None),
        (second, scope_b),
    ]
    check_spans([span(name=str(n), resource=r, instrumentation_scope=s) for n, (r, s) in enumerate(order)])
    records = [
        ReadableLogRecord(ApiLogRecord(observed_timestamp=n, context=Context(), body=n), r, s)
        for n, (r, s) in enumerate(order)
    ]
    check_logs(records)


def test_cached_resources_and_scopes_follow_their_objects() -> None:
    """Encodings kept across batches belong to one object; a new object at a reused id gets its own."""
    for number in range(200):  # resources come and go, ids get reused, the caches fill and clear
        resource = Resource({"n": number})
        scope = InstrumentationScope(f"scope {number}", str(number))
        check_spans([span(resource=resource, instrumentation_scope=scope)])
        check_spans([span(resource=resource, instrumentation_scope=scope)])
        del resource, scope


def test_log_records_every_field() -> None:
    resource = Resource({"service.name": "logs"}, "https://opentelemetry.io/schemas/1.26.0")
    scope = InstrumentationScope("logger", "3", "https://example.com/l", {"s": True})
    record = ApiLogRecord(
        timestamp=1_700_000_000_000_000_000,
        observed_timestamp=1_700_000_000_000_000_001,
        context=set_span_in_context(NonRecordingSpan(CONTEXT)),
        severity_text="WARN",
        severity_number=SeverityNumber.WARN,
        body={"message": "hello", "items": [1, 2, {"deep": [b"x", None]}], "empty": {}},
        attributes=BoundedAttributes(maxlen=1, attributes={"a": 1, "b": 2}, immutable=False),
        event_name="app.event",
    )
    check_logs([ReadableLogRecord(record, resource, scope, LogRecordLimits())])
    bare = ApiLogRecord(observed_timestamp=5, context=Context())  # no body, no trace context, no scope
    check_logs([ReadableLogRecord(bare, resource, None)])


@dataclass
class OldSdkRecord:
    """The SDK ``LogRecord`` of SDKs that handed exporters ``LogData``: it carried the resource."""

    timestamp: int | None
    observed_timestamp: int
    trace_id: int
    span_id: int
    trace_flags: TraceFlags
    severity_text: str | None
    severity_number: SeverityNumber | None
    body: Any
    attributes: Any
    resource: Resource
    dropped_attributes: int


@dataclass
class LogData:
    log_record: OldSdkRecord
    instrumentation_scope: InstrumentationScope | None


def test_log_data_of_older_sdks_encodes_as_readable_log_records() -> None:
    resource = Resource({"service.name": "old"})
    scope = InstrumentationScope("old", "1")
    attributes = BoundedAttributes(maxlen=1, attributes={"a": 1, "b": [1, 2]})
    new = ApiLogRecord(
        timestamp=7,
        observed_timestamp=8,
        context=set_span_in_context(NonRecordingSpan(CONTEXT)),
        severity_text="INFO",
        severity_number=SeverityNumber.INFO,
        body=["x", {"y": 1}],
        attributes=attributes,
    )
    old = OldSdkRecord(
        timestamp=7,
        observed_timestamp=8,
        trace_id=CONTEXT.trace_id,
        span_id=CONTEXT.span_id,
        trace_flags=CONTEXT.trace_flags,
        severity_text="INFO",
        severity_number=SeverityNumber.INFO,
        body=["x", {"y": 1}],
        attributes=attributes,
        resource=resource,
        dropped_attributes=attributes.dropped,
    )
    readable = ReadableLogRecord(new, resource, scope)
    assert encode_logs([LogData(old, scope)]) == encode_logs([readable])
    check_logs([readable])
