"""Where the monkey-patching happens.

Calls ``gevent.monkey.patch_all()`` (minus the modules the user excludes)
exactly once, before anything of the OpenTelemetry SDK exists. It never patches
a process that someone else already patched, and it turns gevent's own
warnings about modules imported too early into one log line that says what to
do. gevent missing is one warning; the application runs on unpatched.
"""

from __future__ import annotations

import sys
import threading
import warnings
from dataclasses import dataclass, field

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.runtime.gevent_state import patched_modules
from otel_gevent_distro.settings import Settings

_ADVICE = (
    "patch earlier: put the distro's sitecustomize folder first on PYTHONPATH "
    "(PYTHONPATH=$(otel-gevent-distro sitecustomize-path)) or call "
    "gevent.monkey.patch_all() on the first line of the program"
)


@dataclass(frozen=True)
class PatchReport:
    """What :func:`apply_patch` found and did."""

    gevent_available: bool
    patched_by_distro: bool
    already_patched: bool
    excluded: frozenset[str] = frozenset()
    gevent_warnings: tuple[str, ...] = ()
    threads_before: tuple[str, ...] = field(default=())
    #: Whether any ``opentelemetry.sdk`` module existed when patching began.
    sdk_imported_before: bool = False


_report: PatchReport | None = None


def last_report() -> PatchReport | None:
    """The report of this process's :func:`apply_patch`, if it ran."""
    return _report


def apply_patch(settings: Settings) -> PatchReport:
    """Patch the standard library for gevent, once, as ``settings`` ask."""
    global _report
    if _report is not None:
        return _report
    _report = _patch(settings)
    return _report


def _patch(settings: Settings) -> PatchReport:
    try:
        from gevent import monkey
    except ImportError as exc:
        logger.warning("%sgevent cannot be imported (%s); the application runs unpatched.", PREFIX, exc)
        return PatchReport(gevent_available=False, patched_by_distro=False, already_patched=False)

    if monkey.is_anything_patched():
        if settings.patch_exclude:
            logger.warning(
                "%sgevent was already patched before the distro started, so "
                "OTEL_PYTHON_GEVENT_PATCH_EXCLUDE=%s has no effect.",
                PREFIX,
                ",".join(sorted(settings.patch_exclude)),
            )
        logger.debug("%sgevent already patched: %s", PREFIX, patched_modules())
        return PatchReport(gevent_available=True, patched_by_distro=False, already_patched=True)

    if settings.patch == "none":
        logger.debug("%sOTEL_PYTHON_GEVENT_PATCH=none: not patching.", PREFIX)
        return PatchReport(gevent_available=True, patched_by_distro=False, already_patched=False)

    threads = tuple(t.name for t in threading.enumerate() if t is not threading.main_thread())
    sdk_before = any(name == "opentelemetry.sdk" or name.startswith("opentelemetry.sdk.") for name in sys.modules)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkey.patch_all(**{name: False for name in settings.patch_exclude})
    messages = tuple(str(w.message) for w in caught if issubclass(w.category, monkey.MonkeyPatchWarning))
    for w in caught:
        if not issubclass(w.category, monkey.MonkeyPatchWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if messages:
        logger.warning("%sgevent warned while patching: %s To fix: %s.", PREFIX, " ".join(messages), _ADVICE)
    if threads:
        logger.warning(
            "%sthreads were already running before patching (%s); they stay real threads. To fix: %s.",
            PREFIX,
            ", ".join(threads),
            _ADVICE,
        )
    return PatchReport(
        gevent_available=True,
        patched_by_distro=True,
        already_patched=False,
        excluded=settings.patch_exclude,
        gevent_warnings=messages,
        threads_before=threads,
        sdk_imported_before=sdk_before,
    )
