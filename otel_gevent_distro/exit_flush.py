"""Keep exporting at interpreter exit working under gevent.

Short programs (scripts, ``multiprocessing`` children, tests) often export
for the first time from the SDK's ``atexit`` shutdown. Under gevent two
things then break, measured on Python 3.11 and 3.12 with gevent 24.2.1 and 26.9:

* gevent's default resolver runs ``getaddrinfo`` in the hub's native thread
  pool, and gRPC's gevent mode waits for every call in that same pool;
  Python 3.12 refuses to start a thread at exit ("can't create new thread
  at interpreter shutdown"), so an export fails unless an idle pool thread
  already exists. The pool adds a thread whenever it has more unfinished
  tasks than threads, even when a thread is about to be free, so
  :func:`ready_exit_pool_threads` sizes the pool up front to :data:`EXIT_POOL_THREADS`
  threads, with no task (the export worker calls it when it starts in a
  patched process, so forked children get their own), and
  :func:`wait_for_idle_pool_thread` lets tasks the application left running
  finish first.
* the HTTP connection pool made by that first export registers a
  ``weakref.finalize``; if ``weakref``'s own exit hook is first registered
  during exit, it runs after greenlet is torn down and prints
  ``RuntimeError: greenlet is being finalized``. :func:`order_exit_hooks`
  registers that hook at start-up, so it runs after the SDK's shutdown.

Neither starts anything in an at-fork hook, and inside uWSGI the pool
threads start only in workers (see :func:`~otel_gevent_distro.servers.after_server_fork`).
"""

from __future__ import annotations

import sys
import time
import weakref
from typing import Any

from otel_gevent_distro.hub import on_main_native_thread
from otel_gevent_distro.servers import after_server_fork

#: Pool threads kept ready for exports at exit: one per signal (spans, logs,
#: metrics may each hold one for a gRPC wait or a DNS look-up) and a spare.
EXIT_POOL_THREADS = 4
#: How often, and how long at most, :func:`wait_for_idle_pool_thread` looks.
IDLE_POLL_S = 0.005
IDLE_WAIT_MAX_S = 1.0

_anchor: object | None = None


class _Anchor:
    """An object whose only purpose is to own one ``weakref.finalize``."""


def order_exit_hooks() -> None:
    """Register ``weakref``'s exit hook now (idempotent)."""
    global _anchor
    if _anchor is None:
        _anchor = _Anchor()
        weakref.finalize(_anchor, int)


def ready_exit_pool_threads() -> None:
    """Have :data:`EXIT_POOL_THREADS` threads in the hub's pool, started now (never blocks).

    Call it from the main thread: the exit flush runs there, on the main hub,
    whose pool serves both gevent's resolver and gRPC's gevent mode.
    """
    if _patched_pool() is None:
        return
    after_server_fork(_start_pool_threads)  # a uWSGI master must not hold threads when it forks


def _patched_pool() -> Any | None:
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("socket"):
        return None
    from gevent import get_hub

    return get_hub().threadpool


def _start_pool_threads() -> None:
    pool = _patched_pool()
    if pool is not None and pool.size < EXIT_POOL_THREADS:
        pool.size = min(pool.maxsize, EXIT_POOL_THREADS)


def wait_for_idle_pool_thread(deadline: float) -> None:
    """Before an export at exit: wait, cooperatively, until a pool thread is idle.

    Once the interpreter is finalizing the pool cannot add a thread, yet it
    tries to whenever its unfinished tasks outnumber its threads. Waits at
    most :data:`IDLE_WAIT_MAX_S` and never past ``deadline``; returns at once
    off the main hub's greenlets, or when the pool has no thread to wait for.
    """
    if not on_main_native_thread():
        return  # another OS thread has its own hub, and the exit flush runs on the main one
    pool = _patched_pool()
    if pool is None or pool.size == 0:
        return
    import gevent
    from gevent.hub import Hub

    if isinstance(gevent.getcurrent(), Hub):
        return
    until = min(deadline, time.monotonic() + IDLE_WAIT_MAX_S)
    while len(pool) >= pool.size and time.monotonic() < until:
        gevent.sleep(IDLE_POLL_S)
