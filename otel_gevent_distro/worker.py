"""The background worker that runs a pipeline's export step, in a greenlet or a thread.

Owns :class:`Worker`, its wake-up signals and the per-process registry of
workers (:func:`start_all`). It must never start a thread or greenlet in an
at-fork hook (children only reset state, see :mod:`otel_gevent_distro.forksafe`)
and never block the gevent hub.

*Worker type.* Decided when a worker starts, per process. When ``threading``
is monkey-patched the worker is a greenlet on the main thread's hub: the
exporters then use gevent's sockets (and gRPC's gevent mode) as they were
built to, an idle worker costs nothing, and no greenlet-backed
``threading.Thread`` exists to confuse ``threading`` bookkeeping at exit. A
real thread in a patched process would drive gevent sockets from a second
hub, which gRPC's gevent mode does not support. Otherwise the worker is a
plain daemon thread, like the SDK's.

*Wake-ups.* In greenlet mode the signal is a ``hub.loop.async_()`` watcher,
whose ``send()`` is safe from any OS thread (for example gevent's
``ThreadPool``), unlike a gevent ``Event``; the schedule delay is a loop
timer. Both are unreferenced, so the worker never keeps ``gevent.wait()`` or
the loop alive. In thread mode the signal is a ``threading.Event``.

*Processes.* A worker records the fork generation it started in. After a
fork the child's worker is idle until the first item is emitted (or, for
metrics, the first collect or flush) in that process; then every registered
worker of the process starts (:func:`start_all`). A child that execs never
starts anything. A greenlet inherited through gevent's fork notices that its
run token was reset and ends at its next wake-up.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Callable
from typing import Any, Protocol

from otel_gevent_distro import forksafe
from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.exit_flush import ready_exit_pool_threads
from otel_gevent_distro.hub import main_hub, note_main_hub, on_main_native_thread, remember_main_hub, threading_patched


class _Signal(Protocol):
    def wait(self, timeout: float) -> None: ...

    def wake(self) -> None: ...

    def close(self) -> None: ...


class _ThreadSignal:
    """Thread mode: a ``threading.Event`` (the process is not patched)."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def wait(self, timeout: float) -> None:
        self._event.wait(timeout)
        self._event.clear()

    def wake(self) -> None:
        self._event.set()

    def close(self) -> None:
        pass


class _HubSignal:
    """Greenlet mode: an async watcher (thread-safe ``send``) plus a timer, both unreferenced."""

    def __init__(self, hub: Any) -> None:
        self._hub = hub
        self._waiter: Any = None
        self._async = hub.loop.async_(ref=False)
        self._async.start(self._on_async)

    def wait(self, timeout: float) -> None:
        from gevent.hub import Waiter

        waiter = Waiter(self._hub)
        self._waiter = waiter
        timer = self._hub.loop.timer(timeout, ref=False)
        timer.start(self._fire, waiter)
        try:
            waiter.get()
        finally:
            self._waiter = None
            timer.close()

    def _fire(self, waiter: Any) -> None:
        # Runs in the hub. Switch only to the waiter still waiting, never to a stale one.
        if self._waiter is waiter:
            self._waiter = None
            waiter.switch(None)

    def _on_async(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._fire(waiter)

    def wake(self) -> None:
        self._async.send()

    def close(self) -> None:
        # The watcher is left started (unreferenced, so it keeps nothing
        # alive; a worker ends only at shutdown or in a forked child): stopping
        # it at shutdown, after a signal handler had raised SystemExit in the
        # event loop, sometimes lost gevent's thread pool wake-ups, and an
        # OTLP/gRPC export in gevent mode then never returned.
        pass


_registry: weakref.WeakSet[Worker] = weakref.WeakSet()


def start_all() -> None:
    """Start every registered worker that is idle in this process (called on a process's first emit)."""
    forksafe.log_hook_failures()
    for worker in list(_registry):
        worker.ensure_started()


class Worker:
    """Runs ``step`` every ``interval_s`` seconds, or sooner when woken, in a greenlet or a thread.

    ``ready`` is checked before each wait: when it says work is ready the
    worker does not sleep, so a wake-up sent while it was busy is never lost.
    ``wait_s``, when given, says how long the next wait may be (at most
    ``interval_s``), so a step can keep its own schedule.
    """

    def __init__(
        self,
        name: str,
        interval_s: float,
        step: Callable[[], None],
        ready: Callable[[], bool] | None = None,
        wait_s: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self._interval_s = interval_s
        self._step = step
        self._ready = ready or (lambda: False)
        self._wait_s = wait_s or (lambda: interval_s)
        self._stopping = False
        self._reset_after_fork()
        forksafe.register_reset(self._reset_after_fork)
        _registry.add(self)
        note_main_hub()

    def _reset_after_fork(self) -> None:
        #: "idle", "greenlet" or "thread".
        self.mode = "idle"
        self._token: object | None = None
        self._signal: _Signal | None = None
        self._generation = forksafe.NOT_ENTERED
        self._start_requested = forksafe.NOT_ENTERED
        self._task: Any = None

    @property
    def running(self) -> bool:
        """True when this worker runs in the current process."""
        return self._token is not None and self._generation == forksafe.generation

    def ensure_started(self) -> None:
        """Start the worker in this process unless it runs already, was stopped or has no schedule."""
        if self._stopping or not math.isfinite(self._interval_s) or self.running:
            return
        try:
            if threading_patched():
                self._start_greenlet()
            else:
                self._start_thread()
        except Exception:  # noqa: BLE001 - telemetry must not break the application
            logger.warning("%scould not start the %s worker.", PREFIX, self.name, exc_info=True)

    def _start_thread(self) -> None:
        token, signal = object(), _ThreadSignal()
        self._token, self._signal, self._generation, self.mode = token, signal, forksafe.generation, "thread"
        thread = threading.Thread(target=self._run, args=(token, signal), name=f"otel-gevent-{self.name}", daemon=True)
        self._task = thread
        thread.start()
        if on_main_native_thread():
            # gevent sockets without patched threads: the exit flush still uses the main hub's pool.
            ready_exit_pool_threads()

    def _start_greenlet(self) -> None:
        if on_main_native_thread():
            self._spawn_on_main_hub()
            return
        # A real OS thread (gevent's ThreadPool): ask the main hub to start it.
        hub = main_hub()
        if hub is None or self._start_requested == forksafe.generation:
            return
        self._start_requested = forksafe.generation
        hub.loop.run_callback_threadsafe(self._spawn_on_main_hub)

    def _spawn_on_main_hub(self) -> None:
        import gevent

        if self.running or self._stopping:
            return
        hub = gevent.get_hub()
        remember_main_hub(hub)
        token, signal = object(), _HubSignal(hub)
        self._token, self._signal, self._generation, self.mode = token, signal, forksafe.generation, "greenlet"
        self._task = gevent.spawn(self._run, token, signal)
        # Exports at interpreter exit need pool threads that already exist.
        ready_exit_pool_threads()

    def _run(self, token: object, signal: _Signal) -> None:
        try:
            while self._token is token and not self._stopping:
                if not self._ready():
                    signal.wait(min(self._interval_s, max(0.0, self._wait_s())))
                if self._token is not token or self._stopping:
                    break
                self._step_safely()
        finally:
            signal.close()
            if self._token is token:
                self._token = None

    def _step_safely(self) -> None:
        try:
            self._step()
        except Exception:  # noqa: BLE001 - keep the worker alive
            logger.warning("%sthe %s worker failed one round.", PREFIX, self.name, exc_info=True)

    def wake(self) -> None:
        """Make the worker run its step now; cheap and safe from any thread.

        A worker whose start had to wait (its process's first item came from
        a real thread before the main hub was known) is started now.
        """
        signal = self._signal
        if signal is not None:
            signal.wake()
        elif not self._stopping:
            self.ensure_started()

    def stop(self) -> None:
        """Ask the worker to end after its current step; does not wait."""
        self._stopping = True
        self.wake()
