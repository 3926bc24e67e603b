"""``GeventPeriodicMetricReader``: the SDK's ``PeriodicExportingMetricReader``, safe across fork and kind to the hub.

Owns the periodic collect-and-export of metrics and the
``OTEL_METRIC_EXPORT_INTERVAL``/``OTEL_METRIC_EXPORT_TIMEOUT`` options. The
configurator substitutes it for the SDK's class by name, so the constructor
keeps that class's shape.

The reader has no emit hook, so in a forked child its worker starts when the
process first emits a span or log record (the shared registry in
:mod:`otel_gevent_distro.worker`), or on the first collect or flush. It must
never start anything in an at-fork hook, and :meth:`shutdown` always does a
final collect and export, bounded by the export timeout.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from opentelemetry.sdk.environment_variables import OTEL_METRIC_EXPORT_INTERVAL, OTEL_METRIC_EXPORT_TIMEOUT
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader, MetricsData

from otel_gevent_distro import forksafe
from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.exit_flush import wait_for_idle_pool_thread
from otel_gevent_distro.exporter_calls import (
    ERROR_LOG_INTERVAL_S,
    EXPORTER_SHUTDOWN_GRACE_S,
    RateLimiter,
    shutdown_exporter,
    suppressed,
)
from otel_gevent_distro.hub import bounded_at_exit
from otel_gevent_distro.pipeline_options import resolve_metric_options
from otel_gevent_distro.worker import Worker


class GeventPeriodicMetricReader(MetricReader):
    """Collects and exports metrics every ``export_interval_millis`` from a greenlet (patched) or a thread.

    Counters: :attr:`exported` and :attr:`failed` count export calls.
    """

    def __init__(
        self,
        exporter: MetricExporter,
        export_interval_millis: float | None = None,
        export_timeout_millis: float | None = None,
        cardinality_limits: Any = None,
    ) -> None:
        extra = {} if cardinality_limits is None else {"cardinality_limits": cardinality_limits}
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
        self._shutdown = False
        self._reset_after_fork()
        self._worker = Worker("metric-export", options.export_interval_millis / 1000, self._scheduled_collect)
        forksafe.register_reset(self._reset_after_fork)
        forksafe.register_exit_flush(self._flush_before_exit)
        # Unlike the span and log processors (which start on their first item),
        # a reader has nothing to wait for: it runs from construction.
        self._worker.ensure_started()

    def _reset_after_fork(self) -> None:
        self._lock: Any = None
        self._generation = forksafe.NOT_ENTERED
        self.exported = 0
        self.failed = 0
        self._errors = RateLimiter(ERROR_LOG_INTERVAL_S)

    @property
    def exporter(self) -> MetricExporter:
        return self._exporter

    @property
    def worker(self) -> Worker:
        return self._worker

    def _adopt_process(self) -> None:
        if self._generation != forksafe.generation:
            self._lock = threading.Lock()
            self._generation = forksafe.generation

    def _start_here(self) -> None:
        """Collect or flush in a process where the worker is not running yet: start it."""
        self._adopt_process()
        if not self._shutdown and not self._worker.running:
            self._worker.ensure_started()

    def _scheduled_collect(self) -> None:
        if self._shutdown:
            return
        try:
            self.collect(timeout_millis=self._export_timeout_millis)
        except Exception:  # noqa: BLE001 - keep collecting next time
            if self._errors.take():
                logger.warning("%smetric collection failed.", PREFIX, exc_info=True)

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        self._start_here()
        deadline = time.monotonic() + min(timeout_millis, self._export_timeout_millis) / 1000
        lock = self._lock
        if not lock.acquire(True, max(0.0, deadline - time.monotonic())):
            self.failed += 1
            if self._errors.take():
                logger.warning("%sa metric export was skipped: the previous one is still running.", PREFIX)
            return
        try:
            self._export(metrics_data, (deadline - time.monotonic()) * 1000)
        finally:
            lock.release()

    def _export(self, metrics_data: MetricsData, timeout_millis: float) -> None:
        try:
            with suppressed():
                result = self._exporter.export(metrics_data, timeout_millis=max(0.0, timeout_millis))
        except Exception:  # noqa: BLE001 - an exporter bug must not kill the worker
            self.failed += 1
            if self._errors.take():
                logger.warning("%sexporting metrics raised.", PREFIX, exc_info=True)
            return
        if getattr(result, "name", "SUCCESS") == "SUCCESS":
            self.exported += 1
        else:
            self.failed += 1

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        if self._shutdown:
            return False
        timeout_millis = min(timeout_millis, self._export_timeout_millis)
        self._start_here()
        super().force_flush(timeout_millis=timeout_millis)
        self._exporter.force_flush(timeout_millis=timeout_millis)
        return True

    def _flush_before_exit(self) -> None:
        if not self._shutdown:
            self.force_flush(self._export_timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        if self._shutdown:
            logger.debug("%smetric reader already shut down.", PREFIX)
            return
        timeout_millis = min(timeout_millis, self._export_timeout_millis)
        deadline = time.monotonic() + timeout_millis / 1000
        self._adopt_process()
        self._worker.stop()
        with bounded_at_exit(deadline):
            wait_for_idle_pool_thread(deadline)
            try:
                # The final collect and export: what was recorded since the last interval.
                self.collect(timeout_millis=timeout_millis)
            except Exception:  # noqa: BLE001 - shutting down must finish
                logger.warning("%sthe final metric collection failed.", PREFIX, exc_info=True)
        self._shutdown = True
        with bounded_at_exit(max(deadline, time.monotonic() + EXPORTER_SHUTDOWN_GRACE_S)):
            shutdown_exporter(self._exporter, (deadline - time.monotonic()) * 1000)
