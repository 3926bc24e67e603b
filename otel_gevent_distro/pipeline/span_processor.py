"""``GeventBatchSpanProcessor``: the SDK's ``BatchSpanProcessor``, safe across fork and kind to the hub.

Owns only the span-specific edge of the pipeline: which spans are queued
(sampled ones, as the SDK does) and the ``OTEL_BSP_*`` options. Queueing
and flushing live in :mod:`otel_gevent_distro.pipeline.batch`, the background
worker in :mod:`otel_gevent_distro.pipeline.worker`, fork handling in
:mod:`otel_gevent_distro.runtime.forksafe`.

It must never export on the caller's path (``on_end`` only queues) and never
start anything in an at-fork hook.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.environment_variables import (
    OTEL_BSP_EXPORT_TIMEOUT,
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    OTEL_BSP_MAX_QUEUE_SIZE,
    OTEL_BSP_SCHEDULE_DELAY,
)
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter

from otel_gevent_distro.pipeline.batch import BatchPipeline, PipelineOwner
from otel_gevent_distro.pipeline.options import BatchVariables, resolve_batch_options
from otel_gevent_distro.pipeline.processor_metrics import processor_metrics

BSP_VARIABLES = BatchVariables(
    max_queue_size=OTEL_BSP_MAX_QUEUE_SIZE,
    schedule_delay=OTEL_BSP_SCHEDULE_DELAY,
    max_export_batch_size=OTEL_BSP_MAX_EXPORT_BATCH_SIZE,
    export_timeout=OTEL_BSP_EXPORT_TIMEOUT,
)


class GeventBatchSpanProcessor(PipelineOwner, SpanProcessor):
    """Batches ended, sampled spans and exports them from a greenlet (patched) or a thread.

    Same constructor as the SDK's ``BatchSpanProcessor``. Counters for tests
    and diagnostics: :attr:`exported`, :attr:`failed`, :attr:`dropped`.
    """

    def __init__(
        self,
        span_exporter: SpanExporter,
        max_queue_size: int | None = None,
        schedule_delay_millis: float | None = None,
        max_export_batch_size: int | None = None,
        export_timeout_millis: float | None = None,
        *,
        meter_provider: Any = None,
    ) -> None:
        options = resolve_batch_options(
            BSP_VARIABLES, max_queue_size, schedule_delay_millis, max_export_batch_size, export_timeout_millis
        )
        metrics = processor_metrics("traces", meter_provider, options.max_queue_size)
        self._pipeline = BatchPipeline(span_exporter, options, "spans", metrics)
        self._emit = self._pipeline.emit

    @property
    def span_exporter(self) -> SpanExporter:
        """The exporter, as the SDK's processor exposes it."""
        exporter: SpanExporter = self._pipeline.exporter  # type: ignore[assignment]
        return exporter

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        context = span.context
        if context is not None and context.trace_flags.sampled:
            self._emit(span)

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        return self._pipeline.flush(timeout_millis)
