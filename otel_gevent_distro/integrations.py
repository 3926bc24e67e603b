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
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from typing import Any

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.settings import get_settings

_enabled: dict[str, bool] = {}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _grpc() -> bool:
    if _sdk_already_built():
        logger.warning(
            "%sgevent was patched after the OpenTelemetry SDK was built, so gRPC's gevent "
            "mode cannot be turned on safely and OTLP/gRPC exports may block the hub. "
            "Use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf or let the distro patch first.",
            PREFIX,
        )
        return False
    _choose_grpc_poller()
    from grpc.experimental import gevent as grpc_gevent

    grpc_gevent.init_gevent()
    from otel_gevent_distro.exit_flush import keep_pool_threads_ready

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


def _psycogreen() -> bool:
    from psycogreen.gevent import patch_psycopg

    patch_psycopg()
    return True


#: name -> (module that must be installed, how to turn it on: True when it did)
INTEGRATIONS: dict[str, tuple[str, Callable[[], bool]]] = {
    "grpc": ("grpc", _grpc),
    "psycogreen": ("psycogreen", _psycogreen),
}


def enable_integrations() -> dict[str, bool]:
    """Turn on every installed, not disabled integration once; return name -> on."""
    disabled = get_settings().disabled_integrations
    for name, (module, turn_on) in INTEGRATIONS.items():
        if name in _enabled:
            continue
        if name in disabled or not _installed(module):
            _enabled[name] = False
            continue
        if name == "psycogreen" and not _installed("psycopg2"):
            _enabled[name] = False
            continue
        try:
            on = turn_on()
        except Exception as exc:  # noqa: BLE001 - a broken optional library must not stop start-up
            logger.warning(
                "%sturning on the %s gevent integration failed (%s: %s).", PREFIX, name, type(exc).__name__, exc
            )
            _enabled[name] = False
        else:
            logger.debug("%s%s gevent integration %s.", PREFIX, name, "on" if on else "left off")
            _enabled[name] = on
    return dict(_enabled)


def enabled_integrations() -> dict[str, bool]:
    """name -> whether it was turned on in this process (empty before patching)."""
    return dict(_enabled)


def on_did_patch_all(event: Any) -> None:
    """gevent plugin: runs after any ``patch_all()`` in a process with this package installed."""
    try:
        enable_integrations()
    except Exception as exc:  # noqa: BLE001 - never break someone else's patch_all
        logger.warning("%sgevent integrations failed after patch_all (%s).", PREFIX, exc)
