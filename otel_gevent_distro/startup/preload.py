"""Import the libraries that misbehave when imported after telemetry starts.

Some libraries fork or spawn a process when they are imported (python-magic
runs ``ldconfig -p`` through ``subprocess`` to find libmagic). Imported after
the SDK's batch workers exist, each such child runs the SDK's at-fork hooks.
This module imports them after patching and before the SDK is built. A library
of the built-in catalog that is not installed is skipped quietly; a module the
user named in ``OTEL_PYTHON_GEVENT_PRELOAD`` that is not installed, or any
module that fails to import, gives one warning, and start-up goes on.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.settings import Settings


@dataclass(frozen=True)
class CatalogEntry:
    """A library known to fork or spawn at import time."""

    module: str
    distribution: str
    reason: str


#: Libraries shown (by a test in this repository) to fork or spawn a process at import.
CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        module="magic",
        distribution="python-magic",
        reason="runs `ldconfig -p` through subprocess (ctypes.util.find_library) to locate libmagic",
    ),
)


@dataclass(frozen=True)
class PreloadResult:
    """Which modules were imported, which were absent and which failed."""

    imported: tuple[str, ...]
    missing: tuple[str, ...]
    failed: tuple[str, ...]


def modules_to_preload(settings: Settings) -> tuple[str, ...]:
    """The catalog (unless turned off) followed by the user's list, without repeats."""
    names = [entry.module for entry in CATALOG] if settings.preload_defaults else []
    names += [name for name in settings.preload if name not in names]
    return tuple(names)


def module_installed(module: str) -> bool:
    """True when ``module`` can be imported here, without importing it (its parent package may be)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        # find_spec imports the parent package; a missing parent means "not installed".
        return False


def preload(settings: Settings) -> PreloadResult:
    """Import every module of :func:`modules_to_preload` that is installed."""
    imported: list[str] = []
    missing: list[str] = []
    failed: list[str] = []
    for module in modules_to_preload(settings):
        if not module_installed(module):
            if module in settings.preload:
                logger.warning(
                    "%sOTEL_PYTHON_GEVENT_PRELOAD names %s, which is not installed; nothing preloaded for it.",
                    PREFIX,
                    module,
                )
            else:
                logger.debug("%spreload: %s is not installed, skipped.", PREFIX, module)
            missing.append(module)
            continue
        try:
            importlib.import_module(module)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of a third-party import
            logger.warning(
                "%spreload: importing %s failed (%s: %s); start-up goes on without it.",
                PREFIX,
                module,
                type(exc).__name__,
                exc,
            )
            failed.append(module)
        else:
            imported.append(module)
    return PreloadResult(tuple(imported), tuple(missing), tuple(failed))
