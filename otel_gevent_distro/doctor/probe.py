"""Runs inside a child interpreter started like the application; prints one JSON line.

Start-up already happened before this module runs (through the
``sitecustomize`` folder or ``opentelemetry-instrument``), so what it reports
is what the application would get. It emits no telemetry and leaves with
``os._exit`` so that no exporter tries to flush to a collector.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def _patching() -> dict[str, Any]:
    from otel_gevent_distro.runtime.gevent_state import patched_modules
    from otel_gevent_distro.startup.patching import last_report

    report = last_report()
    return {
        "patched_modules": patched_modules(),
        "patched_by_distro": bool(report and report.patched_by_distro),
        "already_patched": bool(report and report.already_patched),
        "gevent_warnings": list(report.gevent_warnings) if report else [],
        "threads_before": list(report.threads_before) if report else [],
        "sdk_imported_before_patch": bool(report and report.sdk_imported_before),
    }


def _class_names(objects: Any) -> list[str]:
    return [f"{type(o).__module__}.{type(o).__qualname__}" for o in objects or ()]


def _exporter_names(processors: Any) -> list[str]:
    names = []
    for processor in processors or ():
        exporter = getattr(processor, "span_exporter", None) or getattr(processor, "_exporter", None)
        if exporter is not None:
            names.append(f"{type(exporter).__module__}.{type(exporter).__qualname__}")
    return names


def _sdk() -> dict[str, Any]:
    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider

    from otel_gevent_distro.startup.upstream_checks import log_processors_of, metric_readers_of, span_processors_of

    tracer_provider = trace.get_tracer_provider()
    span_processors = span_processors_of(tracer_provider)
    readers = metric_readers_of(metrics.get_meter_provider())
    log_processors = log_processors_of(get_logger_provider())
    # None: this SDK keeps them where the distro cannot read them (reported as a miss).
    return {
        "tracer_provider": type(tracer_provider).__qualname__,
        "span_processors": None if span_processors is None else _class_names(span_processors),
        "span_exporters": None if span_processors is None else _exporter_names(span_processors),
        "log_processors": None if log_processors is None else _class_names(log_processors),
        "metric_readers": None if readers is None else _class_names(readers),
    }


def _upstream_misses() -> list[str]:
    from otel_gevent_distro.runtime.upstream_misses import misses

    return [miss.line() for miss in misses()]


def _integrations() -> dict[str, str]:
    """name -> "on", "off", or "on first import" (the probe imports neither grpc nor psycopg2)."""
    from otel_gevent_distro.startup.integrations import integration_states

    return integration_states()


def _preload() -> dict[str, list[str]]:
    from otel_gevent_distro.startup.sequence import bootstrap_result

    result = bootstrap_result()
    if result is None or result.preload is None:
        return {"imported": [], "missing": [], "failed": []}
    return {
        "imported": list(result.preload.imported),
        "missing": list(result.preload.missing),
        "failed": list(result.preload.failed),
    }


def collect() -> dict[str, Any]:
    """Everything the probe can see, each part guarded so one failure costs one part."""
    report: dict[str, Any] = {
        "started": "otel_gevent_distro.startup.sequence" in sys.modules,
        "configurator_ran": _configurator_ran(),
    }
    parts = (
        ("patching", _patching),
        ("preload", _preload),
        ("integrations", _integrations),
        ("sdk", _sdk),
        ("upstream_misses", _upstream_misses),
    )
    for name, part in parts:
        try:
            report[name] = part()
        except Exception as exc:  # noqa: BLE001 - a diagnostic reports, it does not fail
            report[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return report


def _configurator_ran() -> bool:
    configurator = sys.modules.get("otel_gevent_distro.startup.configurator")
    return bool(configurator and configurator.GeventConfigurator._instance is not None)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(collect()) + "\n")
    sys.stdout.flush()
    os._exit(0)
