"""The SDK's own telemetry about its processors (``otel.sdk.processor.*``), for the distro's processors.

Owns :func:`processor_metrics`: with ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED=true``
the SDK's batch processors count what they processed and dropped, and the
size and capacity of their queue, under the component names
``batching_span_processor/N`` and ``batching_log_processor/N``; the
distro's processors report the same instruments with the same attributes,
through the ``meter_provider`` they are given (else the global one). SDKs
that predate these metrics (their module is private: ``_shared_internal``)
give an object that records nothing, and the distro says so at debug level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from otel_gevent_distro._log import PREFIX, logger


class _NoMetrics:
    def register_queue_size(self, get_queue_size: Callable[[], int]) -> None:
        pass

    def drop_items(self, count: int, error_type: str = "queue_full") -> None:
        pass

    def finish_items(self, count: int) -> None:
        pass


def processor_metrics(signal: Literal["traces", "logs"], meter_provider: Any, capacity: int) -> Any:
    """The SDK's processor metrics for one processor, or an object that records nothing."""
    try:
        from opentelemetry.metrics import get_meter_provider
        from opentelemetry.sdk._shared_internal._processor_metrics import create_processor_metrics
        from opentelemetry.sdk.environment_variables import OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED
        from opentelemetry.sdk.environment_variables._internal import parse_boolean_environment_variable
        from opentelemetry.semconv._incubating.attributes.otel_attributes import OtelComponentTypeValues
    except ImportError as exc:
        logger.debug("%sthis SDK has no processor metrics (%s).", PREFIX, exc)
        return _NoMetrics()
    component = (
        OtelComponentTypeValues.BATCHING_SPAN_PROCESSOR
        if signal == "traces"
        else OtelComponentTypeValues.BATCHING_LOG_PROCESSOR
    )
    metrics = create_processor_metrics(
        signal,
        component,
        meter_provider or get_meter_provider(),
        capacity=capacity,
        enabled=parse_boolean_environment_variable(OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED),
    )
    return metrics
