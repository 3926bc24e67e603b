"""Traces follow work into greenlets and gevent's thread pool.

The span active where work is *started* is the parent of the spans the work
creates, for every way gevent offers to start work; work started with no
active span starts a new trace; turning the instrumentor off restores gevent
exactly; and it lives beside ``opentelemetry-instrumentation-threading``.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import gevent
import pytest
from gevent.pool import Group, Pool
from gevent.threadpool import ThreadPool, ThreadPoolExecutor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_gevent_distro.instrumentation import GeventInstrumentor
from tests.launch import run_app, write_app

EXPORTER = InMemorySpanExporter()
PROVIDER = TracerProvider()
PROVIDER.add_span_processor(SimpleSpanProcessor(EXPORTER))
tracer = PROVIDER.get_tracer(__name__)


def child(*_: Any) -> int:
    with tracer.start_as_current_span("child"):
        return 1


def _with_threadpool(use: Callable[[ThreadPool], Any]) -> Callable[[], None]:
    def run() -> None:
        pool = ThreadPool(2)
        try:
            use(pool)
        finally:
            pool.kill()

    return run


def _executor_submit() -> None:
    with ThreadPoolExecutor(2) as executor:
        executor.submit(child).result()


def _started(greenlet: gevent.Greenlet) -> gevent.Greenlet:
    greenlet.start()
    return greenlet


def _started_later(greenlet: gevent.Greenlet) -> gevent.Greenlet:
    greenlet.start_later(0.001)
    return greenlet


#: Every way of starting work that the instrumentor covers, each waiting for the work to end.
FORMS: dict[str, Callable[[], Any]] = {
    "gevent.spawn": lambda: gevent.spawn(child).join(),
    "gevent.spawn_later": lambda: gevent.spawn_later(0.001, child).join(),
    "Greenlet().start()": lambda: _started(gevent.Greenlet(child)).join(),
    "Greenlet().start_later()": lambda: _started_later(gevent.Greenlet(child)).join(),
    "Greenlet.spawn": lambda: gevent.Greenlet.spawn(child).join(),
    "Pool.spawn": lambda: Pool(2).spawn(child).join(),
    "Pool.map": lambda: Pool(2).map(child, [1]),
    "Pool.imap": lambda: list(Pool(2).imap(child, [1])),
    "Pool.imap_unordered": lambda: list(Pool(2).imap_unordered(child, [1])),
    "Pool.apply": lambda: Pool(2).apply(child),
    "Pool.apply_async": lambda: Pool(2).apply_async(child).get(),
    "Group.spawn": lambda: Group().spawn(child).join(),
    "Group.map": lambda: Group().map(child, [1]),
    "Group.imap": lambda: list(Group().imap(child, [1])),
    "Group.imap_unordered": lambda: list(Group().imap_unordered(child, [1])),
    "Group.apply": lambda: Group().apply(child),
    "Group.apply_async": lambda: Group().apply_async(child).get(),
    "ThreadPool.spawn": _with_threadpool(lambda pool: pool.spawn(child).get()),
    "ThreadPool.apply": _with_threadpool(lambda pool: pool.apply(child)),
    "ThreadPool.apply_async": _with_threadpool(lambda pool: pool.apply_async(child).get()),
    "ThreadPool.map": _with_threadpool(lambda pool: pool.map(child, [1])),
    "ThreadPool.imap": _with_threadpool(lambda pool: list(pool.imap(child, [1]))),
    "ThreadPool.imap_unordered": _with_threadpool(lambda pool: list(pool.imap_unordered(child, [1]))),
    "ThreadPoolExecutor.submit": _executor_submit,
}


@pytest.fixture(autouse=True)
def _clear_spans() -> Iterator[None]:
    EXPORTER.clear()
    yield
    EXPORTER.clear()


@pytest.fixture
def instrumented() -> Iterator[GeventInstrumentor]:
    instrumentor = GeventInstrumentor()
    instrumentor.instrument()
    yield instrumentor
    instrumentor.uninstrument()


def _only(name: str) -> ReadableSpan:
    spans = [span for span in EXPORTER.get_finished_spans() if span.name == name]
    assert len(spans) == 1, [span.name for span in EXPORTER.get_finished_spans()]
    return spans[0]


def _assert_child_of(parent: ReadableSpan) -> None:
    found = _only("child")
    assert found.parent is not None, "the child span has no parent"
    assert found.parent.span_id == parent.context.span_id
    assert found.context.trace_id == parent.context.trace_id


@pytest.mark.parametrize("form", FORMS)
def test_child_span_has_the_span_active_at_spawn_as_parent(instrumented: GeventInstrumentor, form: str) -> None:
    with tracer.start_as_current_span("parent"):
        FORMS[form]()
    _assert_child_of(_only("parent"))


@pytest.mark.parametrize("form", FORMS)
def test_work_started_without_a_span_starts_a_new_trace(instrumented: GeventInstrumentor, form: str) -> None:
    FORMS[form]()
    assert _only("child").parent is None


def test_greenlet_belongs_to_the_span_it_is_started_under_not_built_under(instrumented: GeventInstrumentor) -> None:
    with tracer.start_as_current_span("built-under"):
        greenlet = gevent.Greenlet(child)
    with tracer.start_as_current_span("started-under"):
        greenlet.start()
    greenlet.join()
    _assert_child_of(_only("started-under"))


def test_spawn_later_captures_when_called(instrumented: GeventInstrumentor) -> None:
    with tracer.start_as_current_span("scheduler"):
        greenlet = gevent.spawn_later(0.01, child)
    with tracer.start_as_current_span("waiter"):
        greenlet.join()
    _assert_child_of(_only("scheduler"))


def test_child_keeps_its_parent_when_the_parent_ended_first(instrumented: GeventInstrumentor) -> None:
    with tracer.start_as_current_span("short-parent"):
        greenlet = gevent.spawn(child)
    greenlet.join()
    _assert_child_of(_only("short-parent"))


def test_thread_pool_worker_does_not_keep_the_previous_tasks_context(instrumented: GeventInstrumentor) -> None:
    pool = ThreadPool(1)
    try:
        with tracer.start_as_current_span("parent"):
            pool.spawn(child).get()
        EXPORTER.clear()
        pool.spawn(child).get()  # same worker thread, no active span
    finally:
        pool.kill()
    assert _only("child").parent is None


def test_a_context_given_explicitly_is_left_alone(instrumented: GeventInstrumentor) -> None:
    with tracer.start_as_current_span("parent"):
        greenlet = gevent.Greenlet(child)
        greenlet.gr_context = contextvars.Context()
        greenlet.start()
        greenlet.join()
    assert _only("child").parent is None


def test_without_the_instrumentor_context_is_lost() -> None:
    """What users see with the plain SDK (FINDINGS section 3)."""
    with tracer.start_as_current_span("parent"):
        gevent.spawn(child).join()
    assert _only("child").parent is None


def test_uninstrument_restores_gevent_exactly() -> None:
    original_spawn = ThreadPool.__dict__["spawn"]
    instrumentor = GeventInstrumentor()
    for _ in range(2):  # and it can be turned on again
        instrumentor.instrument()
        assert ThreadPool.__dict__["spawn"] is not original_spawn
        with tracer.start_as_current_span("parent"):
            FORMS["gevent.spawn"]()
            FORMS["ThreadPool.spawn"]()
        assert all(span.parent is not None for span in EXPORTER.get_finished_spans() if span.name == "child")
        EXPORTER.clear()

        instrumentor.uninstrument()
        assert ThreadPool.__dict__["spawn"] is original_spawn
        with tracer.start_as_current_span("parent"):
            FORMS["gevent.spawn"]()
            FORMS["ThreadPool.spawn"]()
        children = [span for span in EXPORTER.get_finished_spans() if span.name == "child"]
        assert len(children) == 2
        assert all(span.parent is None for span in children)
        EXPORTER.clear()


def test_declares_gevent_as_its_instrumented_library() -> None:
    assert tuple(GeventInstrumentor().instrumentation_dependencies()) == ("gevent >= 24.2.1",)


def test_threading_is_never_wrapped_so_the_threading_instrumentor_wraps_once() -> None:
    pytest.importorskip("opentelemetry.instrumentation.threading")
    from opentelemetry.instrumentation.threading import ThreadingInstrumentor

    threading_instrumentor = ThreadingInstrumentor()
    threading_instrumentor.instrument()
    try:
        wrapped = (threading.Thread.start, threading.Thread.run, futures.ThreadPoolExecutor.submit)
        gevent_instrumentor = GeventInstrumentor()
        gevent_instrumentor.instrument()
        try:
            assert (threading.Thread.start, threading.Thread.run, futures.ThreadPoolExecutor.submit) == wrapped
            for method in wrapped:
                inner = method.__wrapped__
                assert not hasattr(inner, "__wrapped__"), f"{method} is wrapped twice"
        finally:
            gevent_instrumentor.uninstrument()
        assert (threading.Thread.start, threading.Thread.run, futures.ThreadPoolExecutor.submit) == wrapped
    finally:
        threading_instrumentor.uninstrument()


# -- patched processes ---------------------------------------------------------

PATCHED_THREADS = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import json, sys, threading
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from otel_gevent_distro.instrumentation import GeventInstrumentor

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("app")

    threading_instrumented = "threading" in sys.argv
    if threading_instrumented:
        from opentelemetry.instrumentation.threading import ThreadingInstrumentor
        ThreadingInstrumentor().instrument()
    start_before = vars(threading.Thread).get("start")
    GeventInstrumentor().instrument()

    def child(name):
        with tracer.start_as_current_span(name):
            pass

    with tracer.start_as_current_span("parent") as parent:
        thread = threading.Thread(target=child, args=("thread",))
        thread.start()
        thread.join()
        if not threading_instrumented:
            # With opentelemetry-instrumentation-threading after patch_all, a Timer
            # never calls its function: its wrapper of Thread.run lands on gevent's
            # Thread, ahead of Timer.run in the Timer's MRO. Not ours to test.
            timer = threading.Timer(0.001, child, args=("timer",))
            timer.start()
            timer.join()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    print(json.dumps({
        "greenlet_threads": gevent.monkey.is_module_patched("threading"),
        "thread_start_untouched": vars(threading.Thread).get("start") is start_before,
        "parent": spans["parent"].context.span_id,
        "children": {
            name: span.parent.span_id if span.parent else None
            for name, span in spans.items() if name != "parent"
        },
    }))
"""


@pytest.mark.parametrize("with_threading_instrumentor", [False, True], ids=["alone", "with-threading-instrumentor"])
def test_greenlet_backed_threads_after_patch_all(tmp_path: Path, with_threading_instrumentor: bool) -> None:
    if with_threading_instrumentor:
        pytest.importorskip("opentelemetry.instrumentation.threading")
    app = write_app(tmp_path, PATCHED_THREADS)
    result = run_app(app, "plain", args=["threading"] if with_threading_instrumentor else [])
    result.assert_clean()
    seen = json.loads(result.stdout)
    assert seen["greenlet_threads"] is True
    assert seen["thread_start_untouched"] is True
    expected = (
        {"thread": seen["parent"]}
        if with_threading_instrumentor
        else {"thread": seen["parent"], "timer": seen["parent"]}
    )
    assert seen["children"] == expected


# -- the user's way: opentelemetry-instrument, spans at a real receiver --------

FAN_OUT_APP = """
    import gevent
    import threading
    from gevent.pool import Pool
    from opentelemetry import trace

    tracer = trace.get_tracer("fan-out")

    def work(name):
        with tracer.start_as_current_span(name):
            gevent.sleep(0)

    with tracer.start_as_current_span("request"):
        gevent.spawn(work, "in-spawn").join()
        Pool(2).map(work, ["in-pool"])
        gevent.get_hub().threadpool.spawn(work, "in-threadpool").get()
    print("done")
"""

CHILDREN = ("in-spawn", "in-pool", "in-threadpool")


def test_parents_are_linked_at_the_receiver(tmp_path: Path, receiver: Any) -> None:
    app = write_app(tmp_path, FAN_OUT_APP)
    result = run_app(app, "instrument", env=receiver.env("http/protobuf"))
    result.assert_clean()
    assert result.stdout.strip() == "done"
    spans = {span.name: span for span in receiver.wait_for(4, signal="spans", timeout=30)}
    request = spans["request"]
    for name in CHILDREN:
        assert spans[name].parent_span_id == request.span_id, name
        assert spans[name].trace_id == request.trace_id, name


def test_disabled_instrumentation_leaves_greenlets_unlinked(tmp_path: Path, receiver: Any) -> None:
    app = write_app(tmp_path, FAN_OUT_APP)
    env = {**receiver.env("http/protobuf"), "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "gevent"}
    result = run_app(app, "instrument", env=env)
    result.assert_clean()
    spans = {span.name: span for span in receiver.wait_for(4, signal="spans", timeout=30)}
    for name in CHILDREN:
        assert not spans[name].parent_span_id, name
        assert spans[name].trace_id != spans["request"].trace_id, name
