"""gevent's monitor thread, made to sleep while the hub sleeps.

gevent's monitor thread wakes every ``max_blocking_time`` (0.1 s) to ask
whether the hub got control back. In an idle process every one of those
wake-ups finds the hub waiting for I/O, and each costs an OS thread wake-up
and the interpreter lock: about 60 µs of CPU here, 1 ms of CPU per second
in a process that does nothing (``benchmarks/health_costs.py``). Only a hub
that is *running* can be blocked: one waiting in its poll cannot. So this
monitor parks while the hub polls and is woken by the hub itself when the
poll returns.

Invariant: a greenlet can only start blocking after the hub returned from its
poll, and the first thing the hub does then (before any I/O callback can
switch into a greenlet) is the ``check`` watcher installed here at the
highest priority, which wakes the monitor. The monitor parks only when a
``prepare`` watcher at the lowest priority (after gevent's own, which runs the
callbacks that may switch into greenlets) said the hub is about to poll, and
the tracer says the hub greenlet is the active one. The two flags are read and
written so that one side always sees the other's write (the monitor writes
"parked" and then reads "in poll"; the hub writes "not in poll" and then
reads "parked"), and the undo of a park that lost the race happens under a
native lock, so the wake-up is never lost and never doubled.

Detection keeps gevent's meaning and its report: a block is a whole
``max_blocking_time`` in which the tracer saw no greenlet switch while a
greenlet other than the hub ran, and it is reported by gevent's
``monitor_blocking`` (``EventLoopBlocked``, printing when asked) or the
reporter's lighter check. The tracer is asked every *half* period and the
block reported after two quiet halves: gevent asks once per period, so a
block has to cover the whole period after the first check that saw it start,
and one of 1.7x ``max_blocking_time`` is seen seven times in ten; here
every block of 1.5x is seen, and none shorter than 1x is reported. After a
wake-up the switch counter starts afresh. A wake-up whose work ended before the monitor thread ran (it
needs the interpreter lock, which the hub gives up in its poll) parks again
at once. Costs: an idle process's monitor wakes about once per hub wake-up
instead of ten times a second, a running hub's twenty times a second instead
of ten; a hub pays two short Python callbacks per loop iteration (measured in
``benchmarks/health_costs.py``).

Where the invariant cannot hold the monitor never parks and is gevent's,
unchanged: a libuv loop (its I/O callbacks run inside the poll, before any
``check`` watcher), a plug-in that added monitoring functions of its own
(they expect to run on their period), or gevent internals that moved
(:func:`parking_supported` names what is missing).

Private gevent names used (gevent 24.2.1 to 26.9 tested):
``gevent._monitor.PeriodicMonitoringThread`` (subclassed; its ``__call__``
is replaced, ``monitoring_functions``, ``calculate_sleep_time``,
``monitor_blocking``, ``kill``, ``_on_fork``, ``hub``, ``should_run`` and
``_greenlet_tracer`` are used as gevent defines them) and the tracer's
``active_greenlet`` and ``greenlet_switch_counter``.
"""

from __future__ import annotations

import sys
import time
from typing import Any
from weakref import ref as weak_ref

#: Attributes of gevent's monitor class this subclass relies on.
_MONITOR_NAMES = (
    "monitoring_functions",
    "calculate_sleep_time",
    "monitor_blocking",
    "kill",
    "_on_fork",
    "hub",
    "install_monitor_memory_usage",
)
#: Attributes of gevent's switch tracer read from the monitor thread.
_TRACER_NAMES = ("active_greenlet", "greenlet_switch_counter", "did_block_hub")


def parking_supported(hub: Any) -> str:
    """Why this hub cannot have a parking monitor, or ``""`` when it can."""
    if not type(hub.loop).__module__.startswith("gevent.libev"):
        return "the event loop is not libev"
    try:
        from gevent._monitor import PeriodicMonitoringThread
        from gevent._tracer import GreenletTracer
    except ImportError as exc:
        return f"gevent's monitor modules moved ({exc})"
    missing = [name for name in _MONITOR_NAMES if not hasattr(PeriodicMonitoringThread, name)]
    missing += [f"GreenletTracer.{name}" for name in _TRACER_NAMES if not hasattr(GreenletTracer, name)]
    if missing:
        return f"gevent's monitor has no {', '.join(missing)}"
    return ""


def start_parking_monitor(hub: Any) -> Any:
    """Create the hub's monitor thread as a parking monitor; call in the hub's thread.

    Does what ``Hub.start_periodic_monitoring_thread`` does (memory watch for
    the main hub, the started event and gevent's plug-in entry points), with
    this class instead of gevent's. Returns the monitor.
    """
    from gevent.events import PeriodicMonitorThreadStartedEvent, notify_and_call_entry_points

    monitor = _parking_class()(hub)
    hub.periodic_monitoring_thread = monitor
    if getattr(hub, "main_hub", False):
        monitor.install_monitor_memory_usage()
    notify_and_call_entry_points(PeriodicMonitorThreadStartedEvent(monitor))
    return monitor


_PARKING_CLASS: Any = None


def _parking_class() -> Any:
    """The subclass, defined on first use so that importing this module never imports gevent."""
    global _PARKING_CLASS
    if _PARKING_CLASS is None:
        _PARKING_CLASS = _define_parking_class()
    return _PARKING_CLASS


def _define_parking_class() -> Any:
    from gevent._monitor import PeriodicMonitoringThread
    from gevent.monkey import get_original
    from greenlet import getcurrent

    from otel_gevent_distro.runtime import forksafe

    allocate_lock = get_original("_thread", "allocate_lock")
    get_ident = get_original("_thread", "get_ident")
    thread_sleep = get_original("time", "sleep")

    class ParkingMonitor(PeriodicMonitoringThread):  # type: ignore[misc, valid-type]
        """gevent's monitor thread for one hub, parked while that hub polls."""

        def __init__(self, hub: Any) -> None:
            # Everything the thread reads exists before gevent's __init__ starts it.
            self._reset_flags()
            #: Times the monitor parked and was woken (tests and benchmarks read them).
            self.parks = 0
            self.wakes = 0
            loop = hub.loop
            self._before_poll_watcher = loop.prepare(ref=False, priority=loop.MINPRI)
            self._after_poll_watcher = loop.check(ref=False, priority=loop.MAXPRI)
            self._before_poll_watcher.start(self._before_poll)
            self._after_poll_watcher.start(self._after_poll)
            # In a forked child the parent's thread may have held a lock: fresh ones
            # before gevent's reinit restarts the thread (only attribute assignments).
            forksafe.register_reset(self._reset_flags)
            super().__init__(hub)

        def _reset_flags(self) -> None:
            """Fresh locks and flags (at start, and in every forked child)."""
            self._wake = allocate_lock()
            self._wake.acquire()
            self._flags = allocate_lock()
            self._in_poll = False
            self._parked = False
            #: Consecutive half periods in which the tracer saw no switch and a greenlet active.
            self._quiet_halves = 0

        # -- the hub's thread ---------------------------------------------

        def _before_poll(self) -> None:
            self._in_poll = True

        def _after_poll(self) -> None:
            self._in_poll = False
            if self._parked:
                with self._flags:
                    parked, self._parked = self._parked, False
                if parked:
                    self._wake.release()

        # -- the monitor thread -------------------------------------------

        def __call__(self) -> None:
            # As gevent's: the tracer and reports skip a thread marked so.
            getcurrent().gevent_monitoring_thread = weak_ref(self)
            try:
                while self.should_run:
                    functions = self.monitoring_functions()
                    blocking_only = len(functions) == 1
                    period = self.calculate_sleep_time()
                    thread_sleep(period / 2 if blocking_only else period)
                    hub = self.hub
                    if not hub:
                        self.kill()
                    if not self.should_run:
                        pass
                    elif blocking_only:
                        self._check_half_period(functions[0], hub)
                        # Parked until the hub's poll returns; again at once when the
                        # hub is back in its poll by the time this thread runs (it
                        # needs the interpreter lock, which the hub gives up there).
                        while self._park(hub):
                            self._woken(hub)
                    else:
                        self._run_functions(functions, hub)
                    del hub
            except SystemExit:
                pass
            except BaseException:  # noqa: BLE001 - as gevent's: a daemon thread ends quietly
                hub = self.hub
                if sys is not None and sys.stderr is not None and hub is not None:
                    hub.handle_error(self, *sys.exc_info())

        def _check_half_period(self, entry: Any, hub: Any) -> None:
            """Every half period: count the halves without a switch; report after two."""
            if self._greenlet_tracer.did_block_hub(hub):
                self._quiet_halves += 1
                if self._quiet_halves % 2 == 0:
                    # A whole period without a switch: gevent's check (or the reporter's
                    # lighter one) asks the tracer again, finds the same, and reports.
                    entry.function(hub)
            else:
                self._quiet_halves = 0

        def _run_functions(self, functions: Any, hub: Any) -> None:
            now = time.perf_counter()
            for entry in functions:
                if entry.period and entry.last_run_time + entry.period <= now:
                    entry.last_run_time = now
                    entry.function(hub)

        def _park(self, hub: Any) -> bool:
            """Park if the hub is polling; return whether the monitor parked and was woken."""
            tracer = self._greenlet_tracer
            with self._flags:
                self._parked = True
                if not (self._in_poll and tracer.active_greenlet is hub and self.should_run):
                    self._parked = False
                    return False
            self.parks += 1
            self._wake.acquire()
            return True

        def _woken(self, hub: Any) -> None:
            self.wakes += 1
            # Switches counted up to now belong to the wake-up, not to what runs next:
            # asking the tracer (and ignoring its answer) starts its count afresh.
            self._greenlet_tracer.did_block_hub(hub)
            self._quiet_halves = 0

        def kill(self) -> None:
            """As gevent's; also wakes a parked thread so that it ends, and stops the watchers."""
            super().kill()
            with self._flags:
                parked, self._parked = self._parked, False
            if parked:
                self._wake.release()
            hub = self.hub
            if hub is not None and getattr(hub, "thread_ident", None) == get_ident():
                self._before_poll_watcher.stop()
                self._after_poll_watcher.stop()

    return ParkingMonitor
