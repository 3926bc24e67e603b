"""The export thread: one native OS thread per pipeline and process, and how callers wait for it.

Owns :class:`ExportThread` and :func:`wait_released`. Every export of the
distro's span processor, log record processor and metric reader runs on such a
thread, never on the application's greenlets and never on the gevent hub
(``docs/design.md`` gives the measurements behind this choice):

* the emit path only appends to a queue and rings a native lock, so it never
  switches greenlets and never raises, however full the queue is;
* a gevent worker whose greenlets never wait still gets its telemetry out:
  the thread takes the GIL at every switch interval, it does not need the
  hub to run;
* a thread does not survive ``fork``: an export in flight in the parent is
  not resumed in the child (gevent copies suspended greenlets into the
  child, which then read the parent's answer on the parent's socket);
* at interpreter exit the thread already exists, so nothing needs to start
  one (Python 3.12 refuses: "can't create new thread at interpreter shutdown").

The thread is started when its pipeline is built (inside uWSGI: in each
worker after the fork, :func:`~otel_gevent_distro.runtime.server_fork.after_server_fork`)
and again in every forked child, from the at-fork hook
(:func:`otel_gevent_distro.runtime.forksafe.register_child_start`): a native thread
never touches the gevent hub, so starting it before gevent has reinitialised
the hub is safe, and a child that only records metrics exports on its own
schedule from the start. The thread must therefore never use gevent's patched
modules: exporters it calls either use the unpatched standard library (the
distro's OTLP/HTTP exporter) or block only their own thread (gRPC).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.pipeline import native
from otel_gevent_distro.runtime import forksafe
from otel_gevent_distro.runtime.gevent_state import module_patched, on_main_native_thread, silence_this_threads_monitor

#: How often a waiting caller on the gevent hub's thread checks whether the thread is done.
COOPERATIVE_POLL_S = 0.002


class ExportThread:
    """Runs ``step`` on a native thread whenever rung, or after ``wait_s()`` seconds.

    ``prepare``, when given, runs once on the new thread before anything else
    (see :func:`~otel_gevent_distro.pipeline.exporter_calls.prepare_export_thread`).

    ``wait_s`` is asked before every wait, so a step keeps its own schedule
    (an idle pipeline waits until rung, at no CPU cost). :meth:`stop` makes the
    thread run ``step`` one last time and end; :meth:`wait_ended` waits for that.
    """

    def __init__(
        self,
        name: str,
        step: Callable[[], None],
        wait_s: Callable[[], float],
        prepare: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._step = step
        self._wait_s = wait_s
        self._prepare = prepare
        self._stopping = False
        self._reset_after_fork()
        forksafe.register_reset(self._reset_after_fork)
        forksafe.register_child_start(self.ensure_started)

    def _reset_after_fork(self) -> None:
        self._bell = native.Bell()
        self._ended = native.allocate_lock()
        self._ended.acquire()
        self._start_lock = native.allocate_lock()
        self._ident: int | None = None
        self._started_in = forksafe.NOT_ENTERED
        self._finished = False

    @property
    def running(self) -> bool:
        """True while the thread runs in this process."""
        return self._started_in == forksafe.generation and not self._finished

    def on_this_thread(self) -> bool:
        """True when called from this export thread (telemetry made while exporting)."""
        return self._ident is not None and self._ident == native.get_ident()

    def ensure_started(self) -> bool:
        """Start the thread in this process unless it runs or was stopped; True when it runs."""
        if self._started_in == forksafe.generation or self._stopping:
            return self.running
        with self._start_lock:
            if self._started_in == forksafe.generation:
                return self.running
            try:
                self._ident = native.start_thread(self._run)
            except RuntimeError as exc:  # interpreter shutting down, or out of threads
                logger.debug("%sthe %s thread could not start: %s", PREFIX, self.name, exc)
                return False
            self._started_in = forksafe.generation
        return True

    def _run(self) -> None:
        generation = forksafe.generation
        try:
            if self._prepare is not None:
                self._prepare_safely()
            while not self._stopping:
                silence_this_threads_monitor()
                self._bell.wait(self._wait_s())
                if forksafe.generation != generation:
                    return  # pragma: no cover - a native thread does not exist in a child
                self._step_safely()
            self._step_safely()
        finally:
            if forksafe.generation == generation:
                self._finished = True
                self._ended.release()

    def _prepare_safely(self) -> None:
        try:
            self._prepare()  # type: ignore[misc]
        except Exception:  # noqa: BLE001 - a failed preparation only costs what it would have saved
            logger.debug("%spreparing the %s thread failed.", PREFIX, self.name, exc_info=True)

    def _step_safely(self) -> None:
        try:
            self._step()
        except Exception:  # noqa: BLE001 - keep the thread alive
            logger.warning("%sthe %s thread failed one round.", PREFIX, self.name, exc_info=True)

    def wake(self) -> None:
        """Make the thread run its step now; never blocks, never switches, safe from any thread."""
        self._bell.ring()

    def stop(self) -> None:
        """Ask the thread to run its step once more and end; does not wait."""
        self._stopping = True
        self._bell.ring()

    def wait_ended(self, deadline: float) -> bool:
        """Wait until the thread has ended, at most until ``deadline``; True when it has (or never ran)."""
        if not self.running:
            return True
        return wait_released(self._ended, deadline)


def wait_released(lock: Any, deadline: float) -> bool:
    """Wait until ``lock`` can be acquired (then release it again), at most until ``deadline``.

    On the main thread of a gevent-patched process, from a greenlet, while the
    interpreter is not exiting, the wait polls and lets other greenlets run
    (a ``force_flush`` in a request handler must not freeze the server);
    everywhere else it blocks the calling OS thread, which at exit is what is
    wanted: the hub is not needed by the export thread.
    """
    cooperative = _cooperative_wait_possible()
    while True:
        remaining = deadline - time.monotonic()
        if cooperative:
            if lock.acquire(False):
                lock.release()
                return True
            if remaining <= 0:
                return False
            import gevent

            gevent.sleep(min(COOPERATIVE_POLL_S, remaining))
            continue
        if lock.acquire(True, max(0.0, remaining)):
            lock.release()
            return True
        return False


def _cooperative_wait_possible() -> bool:
    if not module_patched("_thread") or sys.is_finalizing():
        return False
    from otel_gevent_distro.runtime import exit_budget

    if exit_budget.begun() or not on_main_native_thread():
        return False  # another OS thread: asking for its hub would create one
    import gevent
    from gevent.hub import Hub

    return not isinstance(gevent.getcurrent(), Hub)
