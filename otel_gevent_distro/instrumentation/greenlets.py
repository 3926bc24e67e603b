"""Carry the OpenTelemetry context into each gevent ``Greenlet`` when it is started.

One hook covers every greenlet form. gevent calls its *spawn callbacks*
(``Greenlet.add_spawn_callback``) from ``Greenlet.start()`` and
``Greenlet.start_later()``, in the greenlet that starts the new one, and every
public way of running a function in a greenlet ends there: ``gevent.spawn``,
``gevent.spawn_later``, ``Greenlet.spawn``, ``Greenlet(...).start()``,
``Group``/``Pool`` (``spawn``, ``map``, ``imap``, ``imap_unordered``, ``apply``,
``apply_async``) and, after ``patch_all()``, ``threading.Thread.start``.
``Greenlet`` is a compiled class whose methods cannot be replaced; the
callback needs no replacement, so removing it restores gevent exactly.

The context is captured at *start*, not at construction: a ``Greenlet(fn)``
built under one span and started under another belongs to the second, as a
``threading.Thread`` does under ``opentelemetry-instrumentation-threading``.

The new greenlet gets a fresh ``contextvars.Context`` holding only the
spawner's OpenTelemetry context (gevent's default is an empty context per
greenlet; other context variables keep that behaviour). A greenlet given a
context explicitly (``gr_context``) before it starts is left alone.

This module never raises into the code that starts a greenlet.
"""

from __future__ import annotations

import contextvars
from typing import Any

from opentelemetry.context import attach, get_current

from otel_gevent_distro._log import PREFIX, logger

_failure_logged = False


def carry_context(greenlet: Any) -> None:
    """gevent spawn callback: give ``greenlet`` the OpenTelemetry context active now."""
    try:
        current = get_current()
        if not current:
            # Nothing to carry: the greenlet starts a new trace, as without us.
            return
        if greenlet.gr_context is not None:
            return
        carrier = contextvars.Context()
        carrier.run(attach, current)
        greenlet.gr_context = carrier
    except Exception as exc:  # noqa: BLE001 - never break the application's spawn
        _log_failure_once(exc)


def _log_failure_once(exc: Exception) -> None:
    global _failure_logged
    if not _failure_logged:
        _failure_logged = True
        logger.debug("%scould not carry the context into a greenlet (%s: %s).", PREFIX, type(exc).__name__, exc)


def install() -> None:
    """Register :func:`carry_context` with gevent (registering twice is harmless)."""
    from gevent import Greenlet

    Greenlet.add_spawn_callback(carry_context)


def uninstall() -> None:
    """Remove :func:`carry_context`; a greenlet started from now on gets gevent's default."""
    from gevent import Greenlet

    Greenlet.remove_spawn_callback(carry_context)
