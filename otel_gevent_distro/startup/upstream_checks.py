"""After start-up: check that what the distro put into the SDK and gevent is in place.

The distro reaches into OpenTelemetry and gevent where they have no public
hook (each place is listed in ``docs/design.md`` with the versions tested):
the SDK builds its periodic metric reader from a module global the
configurator swaps, the providers refresh their resource through a module
function :mod:`otel_gevent_distro.startup.resource_refresh` replaces, gevent's
monitor keeps its switch tracer and fork handler in private attributes. A new
upstream release may move any of these; the swap then does nothing and the
process silently gets upstream's behaviour (threads restarted in at-fork
hooks, an export on the SDK's own thread).

This module owns the check that it did not happen: each part is verified
after it was installed, and one that did not take effect is a *miss*: one
warning naming the part and the upstream version, kept in a list
(:mod:`otel_gevent_distro.runtime.upstream_misses`, where the health
telemetry reports its own) that the doctor's probe reports as a finding. A
check that cannot read what it checks (an internal it reads moved too) is a
miss as well, never a silent pass. Nothing here raises or changes the SDK.

It also owns the guarded reads of the providers' internals that the checks
and the doctor share (:func:`span_processors_of`, :func:`log_processors_of`,
:func:`metric_readers_of`): each returns ``None`` when this SDK keeps them
elsewhere.
"""

from __future__ import annotations

from typing import Any

from otel_gevent_distro.runtime.upstream_misses import Miss, misses, report_miss

# -- guarded reads of the providers' internals ---------------------------------


def span_processors_of(tracer_provider: Any) -> list[Any] | None:
    """The span processors of an SDK ``TracerProvider``, or None when unreadable."""
    active = getattr(tracer_provider, "_active_span_processor", None)
    processors = getattr(active, "_span_processors", None)
    return list(processors) if isinstance(processors, (tuple, list)) else None


def log_processors_of(logger_provider: Any) -> list[Any] | None:
    """The log record processors of an SDK ``LoggerProvider``, or None when unreadable."""
    multi = getattr(logger_provider, "_multi_log_record_processor", None)
    processors = getattr(multi, "_log_record_processors", None)
    return list(processors) if isinstance(processors, (tuple, list)) else None


def metric_readers_of(meter_provider: Any) -> list[Any] | None:
    """The metric readers of an SDK ``MeterProvider``, or None when unreadable.

    SDK 1.45 keeps them in ``_metric_readers``; 1.40 in ``_sdk_config.metric_readers``.
    """
    for readers in (
        getattr(meter_provider, "_metric_readers", None),
        getattr(getattr(meter_provider, "_sdk_config", None), "metric_readers", None),
    ):
        if isinstance(readers, (tuple, list)):
            return list(readers)
    return None


# -- the checks ------------------------------------------------------------------


def _exporting(variable: str) -> bool:
    import os

    names = [name.strip() for name in os.environ.get(variable, "otlp").split(",") if name.strip()]
    return bool(names) and names != ["none"]


def check_sdk() -> list[Miss]:
    """After the configurator built the SDK: the distro's processors and reader are the ones in use."""
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    from otel_gevent_distro.pipeline.log_processor import GeventBatchLogRecordProcessor
    from otel_gevent_distro.pipeline.metric_reader import GeventPeriodicMetricReader
    from otel_gevent_distro.pipeline.span_processor import GeventBatchSpanProcessor

    parts = (
        (
            "the span processor",
            "OTEL_TRACES_EXPORTER",
            trace.get_tracer_provider(),
            span_processors_of,
            GeventBatchSpanProcessor,
        ),
        (
            "the log record processor",
            "OTEL_LOGS_EXPORTER",
            get_logger_provider(),
            log_processors_of,
            GeventBatchLogRecordProcessor,
        ),
        (
            "the metric reader",
            "OTEL_METRICS_EXPORTER",
            metrics.get_meter_provider(),
            metric_readers_of,
            GeventPeriodicMetricReader,
        ),
    )
    for part, variable, provider, read, distro_class in parts:
        if not _exporting(variable) or not type(provider).__module__.startswith("opentelemetry.sdk"):
            continue  # nothing exported for this signal, or the SDK did not build it
        installed = read(provider)
        if installed is None:
            report_miss(
                part,
                "opentelemetry-sdk",
                f"the {type(provider).__name__} keeps its {part.split()[-1]}s where the distro cannot check them",
            )
        elif installed and not any(isinstance(item, distro_class) for item in installed):
            names = ", ".join(sorted({type(item).__name__ for item in installed}))
            report_miss(
                part,
                "opentelemetry-sdk",
                f"the SDK built {names} instead of {distro_class.__name__} (its worker is not fork-safe under gevent)",
            )
    return misses()


def check_resource_refresh(swapped: list[str]) -> None:
    """After :func:`otel_gevent_distro.startup.resource_refresh.install`: every provider that refreshes was reached."""
    from otel_gevent_distro.runtime.gevent_state import module_patched
    from otel_gevent_distro.startup import resource_refresh

    if not module_patched("threading"):
        return  # nothing to make thread-free
    try:
        from opentelemetry.sdk import resources
    except ImportError:
        return
    if not hasattr(getattr(resources, "ResourceDetector", None), "is_process_dependent"):
        return  # an SDK that does not refresh its resource after fork (1.40)
    missing = [name for name in resource_refresh.PROVIDER_MODULES if name not in swapped]
    if missing:
        report_miss(
            "the thread-free resource refresh after fork",
            "opentelemetry-sdk",
            f"{resource_refresh.NAME} was not found in {', '.join(missing)}; "
            "those providers may start threads in forked children",
        )
