"""What the doctor reads without starting anything: options, versions, entry points."""

from __future__ import annotations

import logging
import os
import platform
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, entry_points, version
from pathlib import Path
from typing import Any

from otel_gevent_distro._log import logger
from otel_gevent_distro.settings import load_settings
from otel_gevent_distro.startup.preload import CATALOG, module_installed

DISTRIBUTIONS = (
    "otel-gevent-distro",
    "gevent",
    "greenlet",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-distro",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-otlp-proto-grpc",
    "grpcio",
)
STANDARD_VARIABLES = (
    "OTEL_PYTHON_DISTRO",
    "OTEL_PYTHON_CONFIGURATOR",
    "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
    "OTEL_LOGS_EXPORTER",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
    "PYTHONPATH",
)


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in DISTRIBUTIONS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _names(group: str) -> list[str]:
    return [ep.name for ep in entry_points(group=group)]


def selection(via: str = "instrument") -> dict[str, Any]:
    """Which distro and configurator auto-instrumentation would pick, and why.

    Through the sitecustomize folder both default to ``gevent`` (the folder
    sets them unless the user did); ``opentelemetry-instrument`` takes the
    first entry point found when a variable is unset.
    """
    distros = _names("opentelemetry_distro")
    configurators = _names("opentelemetry_configurator")
    wanted_distro = os.environ.get("OTEL_PYTHON_DISTRO")
    distro: str | None
    if via == "sitecustomize" and wanted_distro is None and "gevent" in distros:
        distro, distro_why = "gevent", "the sitecustomize folder selects it"
    elif wanted_distro is None:
        distro = distros[0] if distros else None
        distro_why = "OTEL_PYTHON_DISTRO is unset: the first one installed is taken"
    elif wanted_distro in distros:
        distro, distro_why = wanted_distro, "named by OTEL_PYTHON_DISTRO"
    else:
        distro, distro_why = None, f"OTEL_PYTHON_DISTRO={wanted_distro!r} matches no installed distro: none runs"
    wanted_configurator = os.environ.get("OTEL_PYTHON_CONFIGURATOR")
    if wanted_configurator is not None:
        configurator = wanted_configurator if wanted_configurator in configurators else None
        configurator_why = "named by OTEL_PYTHON_CONFIGURATOR"
    elif distro == "gevent" and "gevent" in configurators:
        configurator, configurator_why = "gevent", "the gevent distro selects it"
    else:
        configurator = configurators[0] if configurators else None
        configurator_why = "OTEL_PYTHON_CONFIGURATOR is unset: the first one installed is taken"
    return {
        "distros_installed": distros,
        "distro": distro,
        "distro_why": distro_why,
        "configurators_installed": configurators,
        "configurator": configurator,
        "configurator_why": configurator_why,
    }


def options() -> dict[str, Any]:
    # A bad value is reported by the probe, which starts like the application:
    # the doctor's own reading of the options stays quiet, so the line appears once.
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        settings = load_settings()
    finally:
        logger.setLevel(level)
    values = asdict(settings)
    sources = dict(values.pop("sources"))
    return {
        "values": {k: sorted(v) if isinstance(v, frozenset) else v for k, v in values.items()},
        "sources": sources,
        "standard": {name: os.environ.get(name) for name in STANDARD_VARIABLES},
    }


def catalog() -> dict[str, bool]:
    return {entry.module: module_installed(entry.module) for entry in CATALOG}


def sitecustomize_folder() -> dict[str, Any]:
    """Where the distro's sitecustomize folder is, whether PYTHONPATH has it, and what comes before it."""
    from otel_gevent_distro.startup.launch import sitecustomize_path

    folder = sitecustomize_path().resolve()
    entries = [Path(entry).resolve() for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    shadowed_by = None
    if folder in entries:
        for entry in entries[: entries.index(folder)]:
            if (entry / "sitecustomize.py").is_file() or (entry / "sitecustomize").is_dir():
                shadowed_by = str(entry)
                break
    return {"path": str(folder), "on_pythonpath": folder in entries, "shadowed_by": shadowed_by}


def read_environment(via: str = "instrument") -> dict[str, Any]:
    return {
        "versions": versions(),
        "selection": selection(via),
        "options": options(),
        "catalog": catalog(),
        "sitecustomize": sitecustomize_folder(),
    }
