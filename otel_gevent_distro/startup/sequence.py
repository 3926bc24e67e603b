"""The start-up sequence, in one place, for every launch path.

:func:`start` holds the order; the launch paths only decide when to call it
and how far it can go at that moment:

* the ``sitecustomize`` folder (and the Operator's folder, which holds the
  same file) calls it first, before anything of OpenTelemetry is imported,
  with ``defaults=False``: whether the distro's defaults apply depends on the
  distro and configurator that auto-instrumentation then selects;
* the ``gevent`` distro calls it before auto-instrumentation builds anything;
* the ``gevent`` configurator calls it with the SDK build, so the same
  sequence also holds when it is selected alone beside another distro.

Each step runs once per process: a later call skips what an earlier one did.
Nothing here raises into the application. This module imports nothing of
OpenTelemetry; the SDK build is handed in by the configurator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.startup.patching import PatchReport
from otel_gevent_distro.startup.preload import PreloadResult


@dataclass(frozen=True)
class BootstrapResult:
    """What the steps before the SDK did."""

    patch: PatchReport | None
    preload: PreloadResult | None
    integrations: dict[str, bool]


_before_sdk: BootstrapResult | None = None
_defaults_applied = False
_sdk_built = False


def start(*, defaults: bool = True, build_sdk: Callable[[], bool] | None = None) -> BootstrapResult | None:
    """Run the start-up sequence as far as asked; each step once per process, never raising.

    ``build_sdk`` builds the SDK and says whether it succeeded.
    """
    global _before_sdk, _defaults_applied, _sdk_built
    try:
        from otel_gevent_distro.settings import get_settings

        settings = get_settings()
        if _before_sdk is None:
            from otel_gevent_distro.runtime.gevent_state import is_patched
            from otel_gevent_distro.startup.exit_flush import order_exit_hooks
            from otel_gevent_distro.startup.integrations import enable_integrations
            from otel_gevent_distro.startup.patching import apply_patch
            from otel_gevent_distro.startup.preload import preload
            from otel_gevent_distro.startup.uwsgi_hooks import install_server_hooks

            # 1. Patch the standard library, then order the exit hooks so that
            #    exporting at exit works.
            patch = apply_patch(settings)
            order_exit_hooks()
            # 2. Preload the libraries that fork or spawn at import.
            preloaded = preload(settings)
            # 3. Integrations (gRPC's gevent mode, psycogreen) need the standard
            #    library patched first; when the application patches later,
            #    gevent's did_patch_all plugin turns them on.
            integrations = enable_integrations() if is_patched() else {}
            #    A server that forks from C (uWSGI) needs its hooks now.
            install_server_hooks()
            _before_sdk = BootstrapResult(patch, preloaded, integrations)
        if not defaults:
            return _before_sdk
        # 4. The distro's defaults, where the user set nothing.
        if not _defaults_applied:
            from otel_gevent_distro.startup.defaults import apply_defaults

            apply_defaults()
            _defaults_applied = True
        if build_sdk is None or _sdk_built:
            return _before_sdk
        # 5. Build the SDK: exporters that cannot load dropped first, the SDK's
        #    resource refresh made thread-free.
        from otel_gevent_distro.export.selection import check_exporters
        from otel_gevent_distro.startup.resource_refresh import install as refresh_resources_without_threads
        from otel_gevent_distro.startup.upstream_checks import check_resource_refresh, check_sdk

        check_exporters()
        check_resource_refresh(refresh_resources_without_threads())
        _sdk_built = True
        if not build_sdk():
            return _before_sdk
        # What the distro put into the SDK through its internals is in place:
        # checked, and one warning per part that is not.
        check_sdk()
        from otel_gevent_distro.health import start_health_monitoring
        from otel_gevent_distro.runtime import exit_budget
        from otel_gevent_distro.runtime.server_fork import after_server_fork

        # The providers registered their atexit shutdowns while being built:
        # the exit budget's hook goes after them, so it runs first.
        exit_budget.run_before_existing_exit_hooks()
        # 6. gevent's health telemetry; inside uWSGI, in each worker after the fork.
        after_server_fork(functools.partial(start_health_monitoring, settings))
    except Exception:  # noqa: BLE001 - last line of defence for the application
        logger.exception("%sstart-up failed; the application runs without the gevent set-up.", PREFIX)
        if _before_sdk is None:
            _before_sdk = BootstrapResult(None, None, {})
    return _before_sdk


def bootstrap_result() -> BootstrapResult | None:
    """What the steps before the SDK did in this process, if they ran."""
    return _before_sdk
