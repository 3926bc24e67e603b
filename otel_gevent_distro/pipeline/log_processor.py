"""``GeventBatchLogRecordProcessor``: the SDK's ``BatchLogRecordProcessor``, safe across fork and kind to the hub.

Owns only the log-specific edge of the pipeline: turning the emitted record
into the read-only record exporters expect (as the SDK does) and the
``OTEL_BLRP_*`` options. Queueing and flushing live in
:mod:`otel_gevent_distro.pipeline.batch`, the background worker in
:mod:`otel_gevent_distro.pipeline.worker`, fork handling in :mod:`otel_gevent_distro.runtime.forksafe`.

It must never export on the caller's path (``on_emit`` only queues), never
start anything in an at-fork hook, and never log through the logging
module from ``on_emit`` except the rate-limited drop line.
"""

from __future__ import annotations

import copy
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk._logs import LogRecordProcessor
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_BLRP_EXPORT_TIMEOUT,
    OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BLRP_MAX_QUEUE_SIZE,
    OTEL_BLRP_SCHEDULE_DELAY,
)
from opentelemetry.sdk.resources import Resource

from otel_gevent_distro.pipeline.batch import BatchPipeline, PipelineOwner
from otel_gevent_distro.pipeline.options import BatchVariables, resolve_batch_options
from otel_gevent_distro.pipeline.processor_metrics import processor_metrics

try:  # Recent SDKs: processors receive a ReadWriteLogRecord and hand exporters a ReadableLogRecord.
    from opentelemetry.sdk._logs import ReadableLogRecord as _Readable
except ImportError:  # pragma: no cover - older SDKs pass the record through unchanged
    _Readable = None  # type: ignore[assignment,misc]

BLRP_VARIABLES = BatchVariables(
    max_queue_size=OTEL_BLRP_MAX_QUEUE_SIZE,
    schedule_delay=OTEL_BLRP_SCHEDULE_DELAY,
    max_export_batch_size=OTEL_BLRP_MAX_EXPORT_BATCH_SIZE,
    export_timeout=OTEL_BLRP_EXPORT_TIMEOUT,
    default_schedule_delay_millis=1000,
)


def readable(log_record: Any) -> Any:
    """The read-only copy the SDK's batch processor queues, without the (possibly large) context."""
    inner = getattr(log_record, "log_record", None)
    if _Readable is None or inner is None:
        return log_record
    api_record = copy.copy(inner)
    api_record.context = Context()
    resource = log_record.resource if log_record.resource is not None else Resource.create({})
    return _Readable(
        log_record=api_record,
        resource=resource,
        instrumentation_scope=log_record.instrumentation_scope,
        limits=log_record.limits,
    )


class GeventBatchLogRecordProcessor(PipelineOwner, LogRecordProcessor):
    """Batches log records and exports them from a greenlet (patched) or a thread.

    Same constructor as the SDK's ``BatchLogRecordProcessor``. Counters for
    tests and diagnostics: :attr:`exported`, :attr:`failed`, :attr:`dropped`.
    """

    def __init__(
        self,
        exporter: LogRecordExporter,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        max_queue_size: int | None = None,
        *,
        meter_provider: Any = None,
    ) -> None:
        options = resolve_batch_options(
            BLRP_VARIABLES, max_queue_size, schedule_delay_millis, max_export_batch_size, export_timeout_millis
        )
        metrics = processor_metrics("logs", meter_provider, options.max_queue_size)
        self._pipeline = BatchPipeline(exporter, options, "log records", metrics)

    @property
    def exporter(self) -> LogRecordExporter:
        exporter: LogRecordExporter = self._pipeline.exporter  # type: ignore[assignment]
        return exporter

    def on_emit(self, log_record: Any) -> None:
        self._pipeline.emit(readable(log_record))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._pipeline.flush(timeout_millis)
