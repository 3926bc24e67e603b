"""The ``gevent`` configurator (entry point group ``opentelemetry_configurator``).

Builds the SDK through the SDK's own ``_initialize_components``, passing the
distro's fork-safe, hub-friendly processors as keyword arguments; the build is
step 5 of the start-up sequence (:mod:`otel_gevent_distro.startup.sequence`), which also
drops exporters that cannot load (:mod:`otel_gevent_distro.export.selection`) and
starts the health telemetry after it. A failing build is one error line, never
a traceback. The SDK has
no keyword for the metric reader, so for the length of that one call the
reader class it uses is swapped for the distro's (:func:`_metric_reader_swapped`);
:mod:`otel_gevent_distro.startup.upstream_checks` verifies after the build that the
swap took effect.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from opentelemetry.sdk import _configuration as sdk_configuration
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.startup.sequence import start


def _pipeline_classes() -> dict[str, Any]:
    """The processor and reader classes the configurator installs."""
    from otel_gevent_distro.pipeline.log_processor import GeventBatchLogRecordProcessor
    from otel_gevent_distro.pipeline.metric_reader import GeventPeriodicMetricReader
    from otel_gevent_distro.pipeline.span_processor import GeventBatchSpanProcessor

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
        # The SDK builds its reader some other way: after the build,
        # upstream_checks.check_sdk sees the SDK's reader and says so.
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
        classes = _pipeline_classes()
        reader_class = classes.pop("metric_reader")
        for keyword, cls in classes.items():
            kwargs.setdefault(keyword, cls)

        def build_sdk() -> bool:
            try:
                with _metric_reader_swapped(reader_class):
                    super(GeventConfigurator, self)._configure(**kwargs)
            except Exception as exc:  # noqa: BLE001 - telemetry never takes the application down
                logger.error(
                    "%sbuilding the OpenTelemetry SDK failed (%s: %s); the application runs without telemetry.",
                    PREFIX,
                    type(exc).__name__,
                    exc,
                )
                return False
            return True

        # Selected alone beside another distro, the sequence is the same: the
        # steps before the SDK run here unless the distro ran them.
        start(build_sdk=build_sdk)
