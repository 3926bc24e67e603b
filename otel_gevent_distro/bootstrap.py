"""The one start-up routine every launch path calls, in the order that is safe.

1. monkey-patch (:mod:`otel_gevent_distro.patching`);
2. preload the libraries that fork or spawn at import (:mod:`otel_gevent_distro.preload`);
3. turn on gevent integrations such as gRPC's gevent mode (:mod:`otel_gevent_distro.integrations`);
4. install the hooks of a server that forks from C (uWSGI, :mod:`otel_gevent_distro.servers`).

Right after patching it also orders the exit hooks so that exporting at exit
works (:mod:`otel_gevent_distro.exit_flush`).

The SDK is built only after this, by the configurator. This module imports
nothing of OpenTelemetry, and :func:`bootstrap` never raises: telemetry must
not take the application down.
"""

from __future__ import annotations

from dataclasses import dataclass

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.exit_flush import order_exit_hooks
from otel_gevent_distro.integrations import enable_integrations
from otel_gevent_distro.patching import PatchReport, apply_patch, is_patched
from otel_gevent_distro.preload import PreloadResult, preload
from otel_gevent_distro.servers import install_server_hooks
from otel_gevent_distro.settings import get_settings


@dataclass(frozen=True)
class BootstrapResult:
    """What each step did."""

    patch: PatchReport | None
    preload: PreloadResult | None
    integrations: dict[str, bool]


_result: BootstrapResult | None = None


def bootstrap() -> BootstrapResult | None:
    """Patch, preload, then turn on integrations; once per process, never raising."""
    global _result
    if _result is not None:
        return _result
    try:
        settings = get_settings()
        patch = apply_patch(settings)
        order_exit_hooks()
        preloaded = preload(settings)
        # Integrations need the standard library patched first; when the
        # application patches later, gevent's did_patch_all plugin turns them on.
        integrations = enable_integrations() if is_patched() else {}
        install_server_hooks()
        _result = BootstrapResult(patch, preloaded, integrations)
    except Exception:  # noqa: BLE001 - last line of defence for the application
        logger.exception("%sstart-up failed; the application runs without the gevent set-up.", PREFIX)
        _result = BootstrapResult(None, None, {})
    return _result


def bootstrap_result() -> BootstrapResult | None:
    """The result of this process's :func:`bootstrap`, if it ran."""
    return _result
