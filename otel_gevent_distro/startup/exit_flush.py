"""Keep exporting at interpreter exit working under gevent.

* An HTTP connection pool made by an exporter registers a
  ``weakref.finalize``; if ``weakref``'s own exit hook is first registered
  during exit, it runs after greenlet is torn down and prints
  ``RuntimeError: greenlet is being finalized``. :func:`order_exit_hooks`
  registers that hook at start-up, so it runs after the SDK's shutdown.
* gRPC's gevent mode runs every call in the main hub's thread pool, also a
  call made from the export thread, and from Python 3.12 on a pool cannot add
  a thread once the interpreter is finalizing ("can't create new thread at
  interpreter shutdown"). :func:`keep_pool_threads_ready` keeps
  :data:`EXIT_POOL_THREADS` threads in that pool: now, and in every forked
  child once gevent has rebuilt its hub there (a libev fork watcher, which
  fires on the child's first loop iteration, so a ``subprocess`` child that
  execs starts none); inside uWSGI only in the workers, never in the master.
"""

from __future__ import annotations

import weakref
from typing import Any

from otel_gevent_distro.runtime.server_fork import after_server_fork

#: Pool threads kept ready: one per signal (spans, logs, metrics may each hold
#: one for a gRPC call at exit) and a spare.
EXIT_POOL_THREADS = 4

_anchor: object | None = None
_fork_watcher: Any = None


class _Anchor:
    """An object whose only purpose is to own one ``weakref.finalize``."""


def order_exit_hooks() -> None:
    """Register ``weakref``'s exit hook now (idempotent)."""
    global _anchor
    if _anchor is None:
        _anchor = _Anchor()
        weakref.finalize(_anchor, int)


def keep_pool_threads_ready() -> None:
    """Keep :data:`EXIT_POOL_THREADS` threads in the main hub's pool, here and in forked children.

    Call it on the main thread of a patched process (where gRPC's gevent mode is turned on).
    """
    after_server_fork(_ready_pool_threads)


def _ready_pool_threads() -> None:
    global _fork_watcher
    import gevent

    hub = gevent.get_hub()
    pool = hub.threadpool
    if pool.size < EXIT_POOL_THREADS:
        pool.size = min(pool.maxsize, EXIT_POOL_THREADS)
    if _fork_watcher is None:  # a child inherits the started watcher with the loop
        _fork_watcher = hub.loop.fork(ref=False)
        _fork_watcher.start(_ready_pool_threads)
