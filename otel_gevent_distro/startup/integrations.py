"""Turn on the gevent modes of libraries that block the hub without one.

* ``grpc``: ``grpc.experimental.gevent.init_gevent()`` makes gRPC's C core
  cooperate with the hub; without it an OTLP/gRPC export to a slow collector
  freezes every greenlet for the whole export timeout. It is only safe after
  the standard library is patched and before any gRPC object exists.
  gevent's ``subprocess`` forks in Python, so gRPC's fork handlers restart
  its poller thread in the child, and the child then closes that poller's
  descriptors before it execs: with gRPC's default ``epoll1`` poller the
  child now and then aborts (``epoll_wait error: Bad file descriptor``,
  SIGABRT), on every gevent version, with or without OpenTelemetry (grpcio
  1.80 and later, grpc/grpc#43055). Unless gRPC is already loaded or the
  user chose a strategy, ``GRPC_POLL_STRATEGY=poll`` is set first.
* ``psycogreen``: ``psycogreen.gevent.patch_psycopg()`` makes psycopg2 wait
  on the hub instead of blocking in libpq.

:func:`on_did_patch_all` is registered under gevent's
``gevent.plugins.monkey.did_patch_all`` entry point, so it runs right after
*whoever* calls ``patch_all()`` (the distro, ``python -m gevent.monkey``,
gunicorn's gevent worker after fork). Each integration is skipped when its
library is not installed, can be turned off with
``OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS``, and a failure is one warning.

Nothing is imported for an integration at start-up: one whose library is
loaded already turns on at once; the others turn on right after the
program (or the SDK, for the OTLP/gRPC exporter) first imports ``grpc`` or
``psycopg2`` (:mod:`otel_gevent_distro.runtime.import_hooks`). No gRPC object can
exist before ``import grpc`` returns, so gRPC's gevent mode is still on before
the first channel; a process that never uses gRPC or psycopg2 does not pay
for loading them (tens of MB per worker).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.runtime.import_hooks import when_imported
from otel_gevent_distro.settings import INTEGRATIONS, get_settings
from otel_gevent_distro.startup.preload import module_installed


def _grpc(grpc: ModuleType, imported_now: bool) -> bool:
    if not imported_now and _sdk_already_built():
        logger.warning(
            "%sgevent was patched after the OpenTelemetry SDK was built, so gRPC's gevent "
            "mode cannot be turned on safely and OTLP/gRPC exports may block the hub. "
            "Use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf or let the distro patch first.",
            PREFIX,
        )
        return False
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    from otel_gevent_distro.startup.exit_flush import keep_pool_threads_ready

    keep_pool_threads_ready()  # gRPC's calls at exit need pool threads that exist already
    return True


#: The poller whose children of ``subprocess`` survive gRPC's fork handlers (see above).
GRPC_POLLER_FOR_GEVENT = "poll"


def _choose_grpc_poller() -> None:
    if "grpc" in sys.modules or os.environ.get("GRPC_POLL_STRATEGY"):
        return
    os.environ["GRPC_POLL_STRATEGY"] = GRPC_POLLER_FOR_GEVENT
    logger.debug("%sGRPC_POLL_STRATEGY=%s set for gRPC's gevent mode.", PREFIX, GRPC_POLLER_FOR_GEVENT)


def _sdk_already_built() -> bool:
    """True once an SDK tracer provider is installed (its exporters may hold gRPC channels)."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None or "opentelemetry.sdk.trace" not in sys.modules:
        return False
    return type(trace.get_tracer_provider()).__name__ != "ProxyTracerProvider"


def _psycogreen(psycopg2: ModuleType, imported_now: bool) -> bool:
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
    return True


@dataclass(frozen=True)
class Integration:
    #: What must be installed for it to apply.
    requires: tuple[str, ...]
    #: The module whose first import turns it on.
    trigger: str
    #: Turns it on; ``imported_now`` is True when called from the trigger's import.
    turn_on: Callable[[ModuleType, bool], bool]
    #: Runs at start-up while the trigger is not imported yet (cheap, imports nothing).
    prepare: Callable[[], None] | None = None


#: How each integration that :data:`otel_gevent_distro.settings.INTEGRATIONS` names works.
DEFINITIONS: dict[str, Integration] = {
    "grpc": Integration(("grpc",), "grpc", _grpc, prepare=_choose_grpc_poller),
    "psycogreen": Integration(("psycogreen", "psycopg2"), "psycopg2", _psycogreen),
}

#: name -> "on", "off", or "on first import" while its trigger is not imported
_state: dict[str, str] = {}


def enable_integrations() -> dict[str, bool]:
    """Turn on every installed, not disabled integration once (now, or when its library is imported).

    Returns name -> on now. An integration whose library the program has
    not imported yet costs nothing until it does: the library is not
    imported at start-up (:mod:`otel_gevent_distro.runtime.import_hooks`).
    """
    disabled = get_settings().disabled_integrations
    for name in INTEGRATIONS:
        integration = DEFINITIONS[name]
        if name in _state:
            continue
        if name in disabled or not all(module_installed(module) for module in integration.requires):
            _state[name] = "off"
            continue
        loaded = sys.modules.get(integration.trigger)
        if loaded is not None:
            _turn_on(name, integration, loaded, imported_now=False)
            continue
        if integration.prepare is not None:
            integration.prepare()
        _state[name] = "on first import"
        when_imported(integration.trigger, partial(_turn_on, name, integration, imported_now=True))
        logger.debug("%s%s gevent integration: on when %s is imported.", PREFIX, name, integration.trigger)
    return enabled_integrations()


def _turn_on(name: str, integration: Integration, module: ModuleType, imported_now: bool) -> None:
    try:
        on = integration.turn_on(module, imported_now)
    except Exception as exc:  # noqa: BLE001 - a broken optional library must not stop anything
        logger.warning("%sturning on the %s gevent integration failed (%s: %s).", PREFIX, name, type(exc).__name__, exc)
        on = False
    else:
        logger.debug("%s%s gevent integration %s.", PREFIX, name, "on" if on else "left off")
    _state[name] = "on" if on else "off"


def integration_states() -> dict[str, str]:
    """name -> "on", "off" or "on first import" (its library not imported yet) in this process."""
    return dict(_state)


def enabled_integrations() -> dict[str, bool]:
    """name -> whether it is on in this process now (empty before patching)."""
    return {name: state == "on" for name, state in _state.items()}


def on_did_patch_all(event: Any) -> None:
    """gevent plugin: runs after any ``patch_all()`` in a process with this package installed."""
    try:
        enable_integrations()
    except Exception as exc:  # noqa: BLE001 - never break someone else's patch_all
        logger.warning("%sgevent integrations failed after patch_all (%s).", PREFIX, exc)
