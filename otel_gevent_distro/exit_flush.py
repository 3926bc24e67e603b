"""Keep exporting at interpreter exit working under gevent.

Short programs (scripts, ``multiprocessing`` children, tests) often export
for the first time from the SDK's ``atexit`` shutdown. Under gevent two
things then break, measured on Python 3.11 and 3.12 with gevent 24.2.1 and 26.9:

* gevent's default resolver runs ``getaddrinfo`` in the hub's native thread
  pool, and gRPC's gevent mode its blocking calls in a pool of its own;
  Python 3.12 refuses to start a thread at exit ("can't create new thread
  at interpreter shutdown"), so the export fails unless a pool thread
  already exists. :func:`warm_resolver` starts it early (the export worker
  calls it when it starts in a patched process, so forked children get
  their own).
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
import weakref

from otel_gevent_distro.servers import after_server_fork

_anchor: object | None = None


class _Anchor:
    """An object whose only purpose is to own one ``weakref.finalize``."""


def order_exit_hooks() -> None:
    """Register ``weakref``'s exit hook now (idempotent)."""
    global _anchor
    if _anchor is None:
        _anchor = _Anchor()
        weakref.finalize(_anchor, int)


def warm_resolver() -> None:
    """Start one thread of each gevent thread pool an export at exit needs (never blocks).

    Call it from the main thread: the exit flush runs there, on the main hub.
    gevent's resolver uses the hub's pool; gRPC's gevent mode runs its blocking
    calls in a pool of its own.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None or not monkey.is_module_patched("socket"):
        return
    after_server_fork(_start_pool_threads)  # a uWSGI master must not hold threads when it forks


def _start_pool_threads() -> None:
    from gevent import get_hub

    get_hub().threadpool.spawn(int)
    cygrpc = sys.modules.get("grpc._cython.cygrpc")
    pool = getattr(cygrpc, "g_gevent_threadpool", None) if getattr(cygrpc, "g_gevent_activated", False) else None
    if pool is not None:
        pool.spawn(int)
