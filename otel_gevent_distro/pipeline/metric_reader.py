"""``GeventPeriodicMetricReader``: the SDK's ``PeriodicExportingMetricReader``, safe across fork and kind to the hub.

Owns the periodic collect-and-export of metrics and the
``OTEL_METRIC_EXPORT_INTERVAL``/``OTEL_METRIC_EXPORT_TIMEOUT`` options. The
configurator substitutes it for the SDK's class by name, so the constructor
keeps that class's shape.

Collecting and exporting run on the reader's native export thread
(:class:`~otel_gevent_distro.pipeline.worker.ExportThread`), every interval, in every
process: a forked child gets a thread of its own from the at-fork hook, so a
child that only records metrics exports on its own schedule, even if it is
killed before it could flush. ``force_flush`` and ``shutdown`` ask that
thread and wait for it (cooperatively on the gevent hub's thread), so no
export ever runs on a greenlet. ``shutdown`` runs once, whatever the number
of callers: one final collect and export within its timeout and the exit
budget (:mod:`otel_gevent_distro.runtime.exit_budget`), one exporter shutdown.
"""

from __future__ import annotations

import inspect
import math
import time
from typing import Any

from opentelemetry.sdk.environment_variables import OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, MetricsData

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.pipeline import native
from otel_gevent_distro.pipeline.exporter_calls import (
    ERROR_LOG_INTERVAL_S,
    RateLimiter,
    interrupt_at,
    prepare_export_thread,
    shutdown_exporter,
    succeeded,
    suppressed,
)
from otel_gevent_distro.pipeline.options import resolve_metric_options
from otel_gevent_distro.pipeline.worker import ExportThread, wait_released
from otel_gevent_distro.runtime import exit_budget, forksafe
from otel_gevent_distro.runtime.server_fork import after_server_fork


def _component_type() -> dict[str, Any]:
    """Report as the SDK's periodic reader does (``otel.component.type``), on SDKs that name it."""
    if "otel_component_type" not in inspect.signature(MetricReader.__init__).parameters:
        return {}
    from opentelemetry.semconv._incubating.attributes.otel_attributes import OtelComponentTypeValues

    return {"otel_component_type": OtelComponentTypeValues.PERIODIC_METRIC_READER}


class GeventPeriodicMetricReader(MetricReader):
    """Collects and exports metrics every ``export_interval_millis`` on a native export thread.

    Counters, of this process: :attr:`exported` and :attr:`failed` count export calls.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        export_interval_millis: float | None = None,
        export_timeout_millis: float | None = None,
        cardinality_limits: Any = None,
    ) -> None:
        extra: dict[str, Any] = {} if cardinality_limits is None else {"cardinality_limits": cardinality_limits}
        extra.update(_component_type())
        super().__init__(
            preferred_temporality=getattr(exporter, "_preferred_temporality", None),
            preferred_aggregation=getattr(exporter, "_preferred_aggregation", None),
            **extra,
        )
        options = resolve_metric_options(
            OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT, export_interval_millis, export_timeout_millis
        )
        self._exporter = exporter
        self._export_interval_millis = options.export_interval_millis
        self._export_timeout_millis = options.export_timeout_millis
        self._interval_s = options.export_interval_millis / 1000
        self._shutdown = False
        self._reset_after_fork()
        self._worker = ExportThread("metric-export", self._tick, self._wait_s, prepare_export_thread(exporter))
        forksafe.register_reset(self._reset_after_fork)
        forksafe.register_exit_flush(self._flush_before_exit)
        exit_budget.register(self)
        after_server_fork(self._worker.ensure_started)

    def _reset_after_fork(self) -> None:
        self._lock = native.allocate_lock()
        self._next = time.monotonic() + self._interval_s
        self._requests: list[Any] = []
        self._final_deadline: float | None = None
        self._shutdown_started = False
        self.exported = 0
        self.failed = 0
        self._errors = RateLimiter(ERROR_LOG_INTERVAL_S)

    @property
    def exporter(self) -> MetricExporter:
        return self._exporter

    @property
    def worker(self) -> ExportThread:
        return self._worker

    # -- the export thread ------------------------------------------------

    def _wait_s(self) -> float:
        if not math.isfinite(self._interval_s):
            return float("inf")
        return self._next - time.monotonic()

    def _tick(self) -> None:
        """One round on the export thread: a collection when due, asked for, or final."""
        with self._lock:
            requests, self._requests = self._requests, []
        now = time.monotonic()
        due = now >= self._next
        final = self._final_deadline is not None
        if not (due or requests or final):
            return
        if due or requests:
            self._next = now + self._interval_s
        timeout_s = self._export_timeout_millis / 1000
        deadline = now + timeout_s if self._final_deadline is None else min(now + timeout_s, self._final_deadline)
        self._collect_until(deadline)
        if final:
            self._final_deadline = None
        for request in requests:
            request.release()

    def _collect_until(self, deadline: float) -> None:
        try:
            self.collect(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000)
        except Exception:  # noqa: BLE001 - keep collecting next time
            self.failed += 1
            if self._errors.take():
                logger.warning("%smetric collection failed.", PREFIX, exc_info=True)

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        try:
            with suppressed():
                result = self._exporter.export(metrics_data, timeout_millis=max(0.0, timeout_millis))
        except Exception:  # noqa: BLE001 - an exporter bug must not stop the thread
            self.failed += 1
            if self._errors.take():
                logger.warning("%sexporting metrics raised.", PREFIX, exc_info=True)
            return
        if succeeded(result):
            self.exported += 1
        else:
            self.failed += 1

    # -- flush, exit and shutdown ------------------------------------------

    def _ask_thread(self, deadline: float) -> bool:
        """Have the export thread collect and export now; wait for it until ``deadline``."""
        if self._worker.on_this_thread():
            return False
        if not self._worker.ensure_started():
            self._collect_until(deadline)  # no thread here (a uWSGI master): on the caller
            return True
        request = native.allocate_lock()
        request.acquire()
        with self._lock:
            self._requests.append(request)
        self._worker.wake()
        return wait_released(request, deadline)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._shutdown:
            return False
        timeout_s = min(timeout_millis, self._export_timeout_millis) / 1000
        deadline = exit_budget.bound(time.monotonic() + timeout_s)
        done = self._ask_thread(deadline)
        return done and bool(self._exporter.force_flush(timeout_millis=max(0.0, deadline - time.monotonic()) * 1000))

    def begin_exit(self, deadline: float) -> None:
        """The process is exiting: collect and export once more now, on the thread, within ``deadline``."""
        if not self._shutdown:
            self._final_deadline = deadline
            self._worker.wake()

    def _flush_before_exit(self) -> None:
        # A multiprocessing child leaves through os._exit: no atexit, so the budget starts here.
        if not self._shutdown:
            exit_budget.begin()
            self.shutdown()

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        with self._lock:
            if self._shutdown_started:
                logger.warning("%sCan't shutdown multiple times", PREFIX)
                return
            self._shutdown_started = True
        deadline = exit_budget.bound(time.monotonic() + min(timeout_millis, self._export_timeout_millis) / 1000)
        # The final collect and export: what was recorded since the last interval.
        interrupted = False
        if self._worker.running:
            self._final_deadline = deadline
            self._worker.stop()
            if not self._worker.wait_ended(interrupt_at(deadline)):
                # Still exporting: the exporter's shutdown cuts its retries short.
                interrupted = True
                shutdown_exporter(self._exporter, 0)
                self._worker.wait_ended(deadline)
        else:
            self._collect_until(deadline)
        self._shutdown = True
        if not interrupted:
            shutdown_exporter(self._exporter, max(0.0, deadline - time.monotonic()) * 1000)
