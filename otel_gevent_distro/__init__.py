"""OpenTelemetry for gevent applications, safe across fork and never blocking the hub.

Importing this package imports nothing of OpenTelemetry or gevent: the
``sitecustomize`` launch path relies on that to patch before anything else.
The pipeline classes, for setting the SDK up in code, load on first access::

    from otel_gevent_distro import GeventBatchSpanProcessor
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from otel_gevent_distro.version import __version__

if TYPE_CHECKING:
    from otel_gevent_distro.pipeline.log_processor import GeventBatchLogRecordProcessor
    from otel_gevent_distro.pipeline.metric_reader import GeventPeriodicMetricReader
    from otel_gevent_distro.pipeline.span_processor import GeventBatchSpanProcessor

#: Public name -> the module that defines it, imported on first access (PEP 562).
_LAZY = {
    "GeventBatchLogRecordProcessor": "otel_gevent_distro.pipeline.log_processor",
    "GeventBatchSpanProcessor": "otel_gevent_distro.pipeline.span_processor",
    "GeventPeriodicMetricReader": "otel_gevent_distro.pipeline.metric_reader",
}

__all__ = [
    "GeventBatchLogRecordProcessor",
    "GeventBatchSpanProcessor",
    "GeventPeriodicMetricReader",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
