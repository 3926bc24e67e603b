"""The ``gevent`` configurator (entry point group ``opentelemetry_configurator``).

Builds the SDK through the SDK's own ``_initialize_components``, passing the
distro's fork-safe, hub-friendly processors as keyword arguments. Exporters that
cannot load are dropped with one warning first (:mod:`otel_gevent_distro.exporters`),
and a failing build is one error line, never a traceback. The SDK has
no keyword for the metric reader, so for the length of that one call the
reader class it uses is swapped for the distro's (:func:`_metric_reader_swapped`).
The SDK's providers refresh their resource after fork in a thread pool, which
under gevent runs the parent's hub in the child; that refresh runs inline
instead (:mod:`otel_gevent_distro.resource_refresh`). Once the SDK exists,
gevent's health telemetry starts (:mod:`otel_gevent_distro.health`); inside
uWSGI, in each worker after the fork (:mod:`otel_gevent_distro.servers`).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk import _configuration as sdk_configuration
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from otel_gevent_distro import exit_budget
from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.bootstrap import bootstrap
from otel_gevent_distro.defaults import apply_defaults
from otel_gevent_distro.exporters import check_exporters
from otel_gevent_distro.health import start_health_monitoring
from otel_gevent_distro.resource_refresh import install as refresh_resources_without_threads
from otel_gevent_distro.servers import after_server_fork
from otel_gevent_distro.settings import get_settings


def _pipeline_classes() -> dict[str, Any]:
    """The processor and reader classes the configurator installs."""
    from otel_gevent_distro.log_processor import GeventBatchLogRecordProcessor
    from otel_gevent_distro.metric_reader import GeventPeriodicMetricReader
    from otel_gevent_distro.span_processor import GeventBatchSpanProcessor

    return {
        "export_span_processor": GeventBatchSpanProcessor,
        "export_log_record_processor": GeventBatchLogRecordProcessor,
        "metric_reader": GeventPeriodicMetricReader,
    }


@contextlib.contextmanager
def _metric_reader_swapped(reader_class: type) -> Iterator[None]:
    name = "PeriodicExportingMetricReader"
    original = getattr(sdk_configuration, name, None)
    if original is None:
        logger.warning("%sthis SDK builds metric readers differently; using its own reader.", PREFIX)
        yield
        return
    setattr(sdk_configuration, name, reader_class)
    try:
        yield
    finally:
        setattr(sdk_configuration, name, original)


class GeventConfigurator(_OTelSDKConfigurator):  # type: ignore[misc]
    """The SDK's configurator with gevent-safe processors and metric reader."""

    def _configure(self, **kwargs: Any) -> None:
        # Selected without the gevent distro (OTEL_PYTHON_CONFIGURATOR=gevent
        # alone): the order patch -> preload -> SDK still holds, and the
        # defaults are the same as through the distro.
        bootstrap()
        apply_defaults()
        classes = _pipeline_classes()
        reader_class = classes.pop("metric_reader")
        for keyword, cls in classes.items():
            kwargs.setdefault(keyword, cls)
        check_exporters()
        refresh_resources_without_threads()
        try:
            with _metric_reader_swapped(reader_class):
                super()._configure(**kwargs)
        except Exception as exc:  # noqa: BLE001 - telemetry never takes the application down
            logger.error(
                "%sbuilding the OpenTelemetry SDK failed (%s: %s); the application runs without telemetry.",
                PREFIX,
                type(exc).__name__,
                exc,
            )
            return
        # The providers registered their atexit shutdowns while being built: the
        # exit budget's hook goes after them, so it runs first.
        exit_budget.run_before_existing_exit_hooks()
        # gevent's monitor thread: inside uWSGI, started in each worker after the fork.
        after_server_fork(functools.partial(start_health_monitoring, get_settings()))
