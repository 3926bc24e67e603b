"""What the pipelines need from the gevent hub: is it patched, which hub, letting it run.

gevent is imported only when the process is monkey-patched. Owns the
remembered main-thread hub (workers started from real threads are started
on it), :func:`cooperative_yield` (one full event-loop iteration),
back-pressure from emitting greenlets (:func:`make_way_for_export`) and
:func:`bounded_at_exit`.

*Back-pressure.* A greenlet that never waits (a saturated keep-alive
handler) keeps the loop from polling sockets, so an export worker's network
waits starve and its queue overflows: measured with gunicorn's gevent worker
under load, the first export's connect waited 1.6-2.3 s and 35-59 % of the
spans were dropped. From a set fill of its queue on, a pipeline has the
emitting greenlet run one loop iteration itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from typing import Any

#: Emitting greenlets let the event loop run at most this often, process-wide.
PRESSURE_YIELD_INTERVAL_S = 0.001

_main_hub: Any = None


def threading_patched() -> bool:
    """True when gevent has monkey-patched ``threading`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def on_main_native_thread() -> bool:
    if sys.platform.startswith("linux"):
        # The main thread's kernel id is the process id, also right after a fork.
        return threading.get_native_id() == os.getpid()
    return threading.get_native_id() == threading.main_thread().native_id


def note_main_hub() -> None:
    """Remember the main thread's hub, so a worker can be started on it from a real thread later."""
    if _main_hub is None and threading_patched() and on_main_native_thread():
        import gevent

        remember_main_hub(gevent.get_hub())


def remember_main_hub(hub: Any) -> None:
    """Record ``hub`` as the main thread's hub (call it on the main thread)."""
    global _main_hub
    _main_hub = hub


def main_hub() -> Any:
    """The main thread's hub once known, else None."""
    return _main_hub


def cooperative_yield() -> None:
    """Let the event loop run one full iteration (timers and I/O), unless called from the hub.

    ``gevent.sleep(0)`` is not enough: it only queues a callback, and the hub
    polls timers and sockets only every 50 callbacks, so a chunked export
    with no network wait in between would still starve everything else.
    An already expired timer makes the loop poll (without blocking) first.
    """
    import gevent

    hub = gevent.get_hub()
    if gevent.getcurrent() is hub:
        return
    timer = hub.loop.timer(0.0)
    try:
        hub.wait(timer)
    finally:
        timer.close()


_last_pressure_yield = 0.0


def make_way_for_export() -> None:
    """The export queue is filling up: let the event loop run once from the emitting greenlet.

    A saturated gevent process can go a long time without polling sockets
    (a keep-alive handler whose next request is already buffered never
    waits), so the export greenlet's network waits starve while the queue
    overflows. Yielding here, at most once per :data:`PRESSURE_YIELD_INTERVAL_S`,
    only from a greenlet of the main thread, never from the hub or once the
    interpreter is finalizing, trades a little latency for not dropping telemetry.
    """
    global _last_pressure_yield
    now = time.monotonic()
    if now - _last_pressure_yield < PRESSURE_YIELD_INTERVAL_S or sys.is_finalizing() or not on_main_native_thread():
        return
    _last_pressure_yield = now
    with contextlib.suppress(Exception):  # the emit path never raises
        cooperative_yield()


def bounded_at_exit(deadline: float) -> contextlib.AbstractContextManager[Any]:
    """On the gevent hub, silently leave a block that outlives ``deadline``; elsewhere do nothing.

    For shutdown only: a stuck exporter must not hang the process's exit,
    and an exporter interrupted mid-call may not be usable afterwards.
    """
    if not threading_patched():
        return contextlib.nullcontext()
    import gevent
    from gevent.hub import Hub

    if isinstance(gevent.getcurrent(), Hub):
        return contextlib.nullcontext()
    return gevent.Timeout(max(0.001, deadline - time.monotonic()), False)
