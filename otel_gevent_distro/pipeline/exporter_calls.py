"""How the pipelines call an exporter: untraced, judged, shut down in bounded time.

Shared by the batching pipeline of spans and log records and by the metric
reader: the exporter protocol, the success test every SDK result type
passes, :func:`suppressed` (the exporter's own HTTP or gRPC requests are not
traced), :func:`shutdown_exporter` and the :class:`RateLimiter` that keeps
error lines to one per :data:`ERROR_LOG_INTERVAL_S`.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.runtime.gevent_state import module_patched

#: At shutdown, the share of the time left, at most :data:`INTERRUPT_GRACE_MAX_S`, kept for an
#: exporter still busy when the rest is used up: its ``shutdown()`` interrupts its retries.
INTERRUPT_GRACE_SHARE = 0.2
INTERRUPT_GRACE_MAX_S = 1.0
#: At most one warning line about failing exports per this many seconds.
ERROR_LOG_INTERVAL_S = 10.0


class Exporter(Protocol):
    def export(self, batch: Sequence[Any], /) -> Any: ...

    def shutdown(self) -> Any: ...


class RateLimiter:
    """True at most once per ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last = -math.inf

    def take(self) -> bool:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return False
        self._last = now
        return True


def succeeded(result: Any) -> bool:
    # SpanExportResult, LogRecordExportResult, LogExportResult, MetricExportResult
    # all name their success SUCCESS; an exporter returning nothing is not failing.
    return result is None or getattr(result, "name", "SUCCESS") == "SUCCESS"


def export_until(exporter: Any, batch: Sequence[Any], deadline: float) -> bool:
    """Export ``batch`` untraced; True when it was delivered.

    An exporter with ``export_until(batch, deadline)`` (the distro's OTLP/HTTP
    exporter) is held to ``deadline``, retries included; any other is called
    as the SDK calls it and is bounded by its own timeout only.
    """
    bounded = getattr(exporter, "export_until", None)
    with suppressed():
        if bounded is not None:
            return succeeded(bounded(batch, deadline))
        return succeeded(exporter.export(batch))


def interrupt_at(deadline: float) -> float:
    """When to stop waiting for an export and interrupt the exporter, so it is out before ``deadline``."""
    left = max(0.0, deadline - time.monotonic())
    return deadline - min(INTERRUPT_GRACE_MAX_S, left * INTERRUPT_GRACE_SHARE)


#: Threads kept in the pool of an export thread's own gevent hub (name resolution).
EXPORT_THREAD_POOL_THREADS = 2


def prepare_export_thread(exporter: Any) -> Callable[[], None] | None:
    """What an export thread must do first for ``exporter``, when anything.

    An exporter that uses gevent's patched sockets on the export thread (upstream's
    OTLP/HTTP exporter, kept by choice, or any other exporter) gets a gevent hub of
    that thread and, for name resolution, a thread pool of that hub. Python 3.12
    cannot start the pool's threads at interpreter exit, so a first export at
    exit would fail: when the thread starts, its pool is given its threads and
    a name is resolved once.
    The distro's exporters need nothing.
    """
    if hasattr(exporter, "export_until") or "grpc" in type(exporter).__module__:
        return None  # the distro's exporters and gRPC never use gevent's sockets on the thread
    if not module_patched("socket"):
        return None
    # The imports happen here, on the thread that builds the pipeline: made
    # first on the export thread, each file they read hands the GIL back and
    # forth with a busy hub (5 ms a time), and a greenlet that never waits
    # kept the thread from its first export for the whole of its run.
    import netrc  # noqa: F401 - requests imports it on its first request

    import gevent
    import gevent.threadpool  # the export thread's hub makes a pool

    gevent.config.resolver  # noqa: B018 - imports the resolver class the thread's hub will make

    def resolve_once() -> None:
        import socket

        import gevent

        # This thread's own hub and pool: the pool adds a thread whenever its tasks
        # outnumber its threads, so it gets spares now, while threads can start.
        gevent.get_hub().threadpool.size = EXPORT_THREAD_POOL_THREADS
        socket.getaddrinfo("localhost", 0)

    return resolve_once


def shutdown_exporter(exporter: Any, timeout_millis: float) -> None:
    """``exporter.shutdown()``, passing the time left when it accepts ``timeout_millis``."""
    try:
        parameters = inspect.signature(exporter.shutdown).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    try:
        if "timeout_millis" in parameters:
            exporter.shutdown(timeout_millis=max(0.0, timeout_millis))
        else:
            exporter.shutdown()
    except Exception:  # noqa: BLE001 - shutting down must finish
        logger.warning("%sexporter shutdown failed.", PREFIX, exc_info=True)


def suppressed() -> Any:
    """A context manager that keeps instrumentations from tracing the exporter's own requests.

    Imported with this module, not on first use: a first import on the hub
    stalled it for about 100 ms.
    """
    return suppress_instrumentation()
