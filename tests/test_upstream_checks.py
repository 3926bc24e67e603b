"""The distro says so when a private upstream name it relies on did not take effect.

Each case makes the installed SDK behave as a release that moved the name
would (the SDK's own code runs; only the one name the distro relies on is
out of reach) and checks for one warning naming the part and the SDK version,
the application running on, and the doctor's probe listing the miss.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from tests.launch import run_app, write_app

#: Builds the SDK like the configurator does under opentelemetry-instrument and
#: prints what the distro found missing; leaves with os._exit (no export at exit).
BUILD_APP = """
    import json, os, sys
    import gevent.monkey
    gevent.monkey.patch_all()

    from opentelemetry.sdk import _configuration

    if "reader" in sys.argv:
        # A release whose metrics set-up no longer reads the module global the
        # configurator swaps: the SDK's own class is back for the build.
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        init_metrics = _configuration._init_metrics

        def init_metrics_reading_its_own_class(*args, **kwargs):
            swapped = _configuration.PeriodicExportingMetricReader
            _configuration.PeriodicExportingMetricReader = PeriodicExportingMetricReader
            try:
                return init_metrics(*args, **kwargs)
            finally:
                _configuration.PeriodicExportingMetricReader = swapped

        _configuration._init_metrics = init_metrics_reading_its_own_class
    if "refresh" in sys.argv:
        # A release whose tracer provider refreshes its resource under another name.
        import opentelemetry.sdk.trace as sdk_trace
        del sdk_trace._get_process_dependent_resource

    from opentelemetry import trace
    from otel_gevent_distro.startup.configurator import GeventConfigurator
    from otel_gevent_distro.doctor.probe import collect

    GeventConfigurator().configure()
    with trace.get_tracer("app").start_as_current_span("still-works"):
        pass
    print(json.dumps(collect()["upstream_misses"]), flush=True)
    os._exit(0)
"""

ENV = {
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_METRICS_EXPORTER": "console",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_PYTHON_GEVENT_HEALTH": "false",
}


def _build(tmp_path: Path, case: str) -> tuple[list[str], list[str]]:
    result = run_app(write_app(tmp_path, BUILD_APP), "plain", env=ENV, args=[case])
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    misses = json.loads(result.stdout.strip().splitlines()[-1])
    return misses, result.warnings()


def test_nothing_is_missing_with_the_sdk_as_installed(tmp_path: Path) -> None:
    misses, warnings = _build(tmp_path, "as-installed")
    assert misses == []
    assert warnings == []


def test_a_metric_reader_swap_that_did_nothing_is_one_warning(tmp_path: Path) -> None:
    misses, warnings = _build(tmp_path, "reader")
    (miss,) = misses
    assert miss.startswith("the metric reader is not in place with opentelemetry-sdk ")
    assert "PeriodicExportingMetricReader instead of GeventPeriodicMetricReader" in miss
    assert [line for line in warnings if "not in place" in line] == [
        f"otel-gevent-distro: {miss}; please report it with this line."
    ]


@pytest.mark.applies_when(
    hasattr(importlib.import_module("opentelemetry.sdk.trace"), "_get_process_dependent_resource"),
    reason="this SDK release does not refresh its resource after fork",
)
def test_a_resource_refresh_not_found_is_one_warning(tmp_path: Path) -> None:
    misses, warnings = _build(tmp_path, "refresh")
    (miss,) = misses
    assert miss.startswith("the thread-free resource refresh after fork is not in place with opentelemetry-sdk ")
    assert "opentelemetry.sdk.trace" in miss
    assert len([line for line in warnings if "not in place" in line]) == 1
