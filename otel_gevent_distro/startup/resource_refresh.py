"""Refresh the per-process resource after fork without starting threads.

Since SDK 1.4x the tracer, meter and logger providers each register an
at-fork child hook that re-runs the *process-dependent* resource detectors
(``service.instance.id`` is one, and always on) through a
``concurrent.futures.ThreadPoolExecutor``. Under ``patch_all()`` those
threads are greenlets, so the child switches into the hub it inherited
before gevent reinitialised it: the parent's greenlets run again in the
child (in a ``subprocess`` child before ``exec`` too), and gevent older than
25.8 prints ``AssertionError: (None, <callback ...>)``.

The providers look the refresh function up by name in their own modules when
the fork happens; :func:`install` points those names at :func:`detect_inline`,
which runs the same detectors in the calling thread (they read the pid,
``sys.argv`` and make a UUID: microseconds). It only acts when gevent patched
``threading``, and only on names that exist in the installed SDK.
"""

from __future__ import annotations

import importlib
from typing import Any

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.runtime.gevent_state import module_patched

NAME = "_get_process_dependent_resource"
#: Modules whose providers refresh their resource after fork.
PROVIDER_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.metrics._internal",
    "opentelemetry.sdk._logs._internal",
)


def detect_inline() -> Any:
    """The process-dependent part of the resource, detected without threads."""
    from opentelemetry.sdk import resources

    resource = resources.Resource.get_empty()
    for detector in resources._build_resource_detectors():
        if not detector.is_process_dependent():
            continue
        try:
            resource = resource.merge(detector.detect())
        except Exception as exc:  # noqa: BLE001 - the SDK ignores a failing detector too
            logger.debug("%sresource detector %r failed after fork: %s", PREFIX, detector, exc)
    return resource


def install() -> list[str]:
    """Swap the refresh function in every provider module that has it; return their names."""
    if not module_patched("threading"):
        return []
    try:
        from opentelemetry.sdk import resources

        resources._build_resource_detectors  # noqa: B018 - fail here, not in a fork hook
    except (ImportError, AttributeError):
        return []
    swapped = []
    for name in PROVIDER_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        current = getattr(module, NAME, None)
        if current is None:
            continue
        if current is not detect_inline:
            setattr(module, NAME, detect_inline)
        swapped.append(name)
    return swapped
