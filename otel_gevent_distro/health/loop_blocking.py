"""Turn gevent's "event loop blocked" reports into a metric and a log record.

gevent's monitor thread checks every ``max_blocking_time`` seconds whether
the hub got control back; when it did not, it publishes a
``gevent.events.EventLoopBlocked`` event carrying the blocked thread's stack.
The distro starts that thread for the main hub as the parking monitor of
:mod:`otel_gevent_distro.health.parking_monitor` (it sleeps while the hub
polls), unless the user turned gevent's own on (``GEVENT_MONITOR_THREAD_ENABLE``
or ``gevent.config.monitor_thread``), which is then left as gevent makes it.
:class:`BlockReporter` subscribes to those events and, once the blocking
greenlet finally yields, records how long the loop was blocked (histogram
``gevent.loop.block.duration``) and emits a rate-limited log record
``gevent.loop.blocked`` with the stack. When gevent does not print its
reports and nothing else subscribes to its events, gevent's check is
replaced by :class:`_GeventCheck`, which asks the same question without
building gevent's report of every greenlet and thread.

Only the hub monitoring was started for (the main thread's) is reported;
other threads' hubs (gevent's own monitor, when the user turned it on,
starts a monitor thread for each) are ignored.

Threads: :meth:`BlockReporter.on_event` runs in gevent's monitor thread while
the hub's thread is stuck. It only notes the block in a dict and asks the hub
(``loop.run_callback_threadsafe``) to call back when it runs again; it never
logs, takes a lock or touches the SDK from there, because after ``patch_all()``
those locks are gevent locks that belong to the hub's thread. Everything else
runs in the hub's thread, in a short-lived greenlet.

The duration ends when the hub runs again and starts at the event loop's
last clock update before the block (the loop's clock stands still while it
is blocked; :meth:`BlockReporter.calibrate` maps it to ``time.perf_counter``).
That is the start of the loop iteration the block happened in, so the
duration covers everything that kept the loop from polling. Without a
calibration the start is the monitor's first sighting minus
``max_blocking_time``, which reads short by up to ``max_blocking_time``.

At exit the pipelines' shutdowns hold the hub's thread on purpose while the
export threads deliver what is left (:mod:`otel_gevent_distro.runtime.exit_budget`).
That wait is not a block of the application: when the exit budget starts,
the reporter unsubscribes and stops gevent's monitor thread, so the exit
neither records a block nor (gevent without ``print_blocking_reports``)
prints a blocking report among the program's last lines.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.context import Context, get_current

from otel_gevent_distro._log import PREFIX, logger

#: Name of the log record emitted for a blocked loop.
BLOCKED_EVENT = "gevent.loop.blocked"

#: At most one log record per this many seconds; the others are counted.
REPORT_INTERVAL = 10.0

#: A loop clock further back than this is taken for a clock step, not a block start.
_MAX_LOOKBACK = 60.0


@dataclass
class Block:
    """One period during which the hub did not get control."""

    started: float
    greenlet_name: str
    greenlet: Any  # a weak reference to the greenlet, or a callable returning None
    stack: str
    #: The blocking greenlet's OpenTelemetry context, read when the block ended.
    context: Context | None = None


def greenlet_name(greenlet: Any) -> str:
    """A short, readable name: gevent's ``Greenlet.name``, ``main``, or the class name."""
    name = getattr(greenlet, "name", None)
    if isinstance(name, str) and name:
        return name
    if getattr(greenlet, "parent", 1) is None:
        return "main"
    return type(greenlet).__name__


def blocked_stack(info: Any) -> str:
    """The blocked thread's stack from an ``EventLoopBlocked.info`` report."""
    lines = [str(line) for line in info or ()]
    for index, line in enumerate(lines[:-1]):
        if line.startswith("Blocked Stack"):
            return lines[index + 1]
    return "\n".join(lines)


def _root(greenlet: Any) -> Any:
    """The main greenlet of ``greenlet``'s thread (readable from any thread)."""
    while greenlet is not None and getattr(greenlet, "parent", None) is not None:
        greenlet = greenlet.parent
    return greenlet


def _weak(obj: Any) -> Any:
    try:
        return weakref.ref(obj)
    except TypeError:
        return lambda: None


class BlockReporter:
    """Receives gevent's blocked-loop events; records and logs each block once it ends."""

    def __init__(self, hub: Any, histogram: Any, otel_logger: Any, report_interval: float = REPORT_INTERVAL) -> None:
        self._hub = hub
        #: The main greenlet of the hub's thread.
        self._root = _root(hub)
        self._histogram = histogram
        self._logger = otel_logger
        self._report_interval = report_interval
        #: id(hub) -> the block still going on in that hub's thread.
        self._pending: dict[int, Block] = {}
        #: id(hub) -> when the hub last got control back after a block.
        self._ended_at: dict[int, float] = {}
        self._last_report: float | None = None
        self._suppressed = 0
        self._event_class: Any = None
        self._subscribed = False
        self._report_failed = False
        self._pid = os.getpid()
        #: time.perf_counter() minus the hub loop's clock, measured in the hub's thread.
        self._clock_offset: float | None = None

    # -- set-up, in the hub's thread ---------------------------------------

    def start(self) -> bool:
        """Subscribe to gevent's events and make sure the monitor thread runs."""
        from gevent import config, events

        # The user's own gevent monitor (GEVENT_MONITOR_THREAD_ENABLE, or turned on in code)
        # is left as gevent makes it; otherwise the distro starts a parking one.
        users_monitor = bool(config.monitor_thread)
        if not users_monitor:
            if _set_by_environment(config, "monitor_thread"):
                logger.debug(
                    "%sgevent's monitor thread is turned off in the environment; loop blocking is not reported.",
                    PREFIX,
                )
                return False
            # The distro reports blocks as telemetry; do not also print them,
            # unless the user asked for printing (recent gevent has the switch).
            if "print_blocking_reports" in config.settings and not _set_by_environment(
                config, "print_blocking_reports"
            ):
                config.print_blocking_reports = False
        self._event_class = events.EventLoopBlocked
        if not self._subscribed:
            events.subscribers.append(self.on_event)
            self._subscribed = True
        self.calibrate()
        from otel_gevent_distro.runtime import exit_budget

        exit_budget.register(self)
        with warnings.catch_warnings():
            # gevent also watches memory when psutil is installed, and warns otherwise.
            warnings.filterwarnings("ignore", message="Unable to monitor memory usage")
            self._start_monitor(config, users_monitor)
        self._check_monitor_internals()
        self._wrap_gevent_check()
        return True

    def _start_monitor(self, config: Any, users_monitor: bool) -> None:
        """gevent's monitor thread for this hub: the parking one unless the user started gevent's."""
        from otel_gevent_distro.health.parking_monitor import parking_supported, start_parking_monitor

        if users_monitor or self._hub.periodic_monitoring_thread is not None:
            self._hub.start_periodic_monitoring_thread()
            return
        reason = parking_supported(self._hub)
        if not reason:
            start_parking_monitor(self._hub)
            return
        if not reason.startswith("the event loop"):
            from otel_gevent_distro.runtime.upstream_misses import report_miss

            report_miss(
                "the idle-parking loop monitor",
                "gevent",
                f"{reason}; gevent's own monitor thread runs instead (about 1 ms of CPU per second when idle)",
            )
        # gevent's own monitor, turned on for this hub only: without config.monitor_thread
        # gevent starts none for other threads' hubs (the export threads', the pool's).
        config.monitor_thread = True
        try:
            self._hub.start_periodic_monitoring_thread()
        finally:
            config.monitor_thread = False

    def _wrap_gevent_check(self) -> None:
        """Put a :class:`_GeventCheck` in front of gevent's blocking check (once, in the hub's thread)."""
        monitor = getattr(self._hub, "periodic_monitoring_thread", None)
        gevent_check = getattr(monitor, "monitor_blocking", None)
        tracer = getattr(monitor, "_greenlet_tracer", None)
        entries = getattr(monitor, "monitoring_functions", None)
        if gevent_check is None or tracer is None or not callable(entries):
            return
        for entry in entries():
            function = getattr(entry, "function", None)
            if function == gevent_check:
                entry.function = _GeventCheck(self, gevent_check, tracer)
                return
            if isinstance(function, _GeventCheck):
                return  # already wrapped (a second start in this process)
        logger.debug("%sgevent's blocking check was not found; each blocked period is reported in full.", PREFIX)

    def reports_repeats(self) -> bool:
        """Whether someone besides this reporter hears of every blocked period.

        gevent prints a report for each period the hub stays blocked when
        ``print_blocking_reports`` is on, and every subscriber of
        ``gevent.events`` is told of each one.
        """
        from gevent import config, events

        if getattr(config, "print_blocking_reports", True):
            return True
        return any(subscriber != self.on_event for subscriber in events.subscribers)

    def _check_monitor_internals(self) -> None:
        """gevent's monitor keeps what forked children need in private attributes: say when they moved."""
        monitor = getattr(self._hub, "periodic_monitoring_thread", None)
        if monitor is None:
            return
        missing = [name for name in ("_greenlet_tracer", "_on_fork") if not hasattr(monitor, name)]
        if missing:
            from otel_gevent_distro.runtime.upstream_misses import report_miss

            report_miss(
                "the block reporting in forked children",
                "gevent",
                f"its monitor thread has no {' or '.join(missing)}; "
                "a child forked without gevent's reinit may report no blocks",
            )

    def stop(self) -> None:
        """Unsubscribe (gevent's monitor thread itself keeps running)."""
        from gevent import events

        if self._subscribed:
            self._subscribed = False
            with contextlib.suppress(ValueError):
                events.subscribers.remove(self.on_event)
        self._pending.clear()

    def begin_exit(self, deadline: float) -> None:
        """The process is exiting: stop reporting, and stop gevent's monitor thread.

        Called from the thread that starts the exit budget (the hub's, at
        ``atexit``); gevent's public ``kill()`` only clears a flag and takes the
        switch tracer out, the monitor thread ends at its next wake-up.
        """
        self.stop()
        monitor = getattr(self._hub, "periodic_monitoring_thread", None)
        kill = getattr(monitor, "kill", None)
        if callable(kill):
            with contextlib.suppress(Exception):
                kill()

    def calibrate(self) -> None:
        """Measure how the hub loop's clock maps to ``time.perf_counter`` (in the hub's thread)."""
        try:
            loop = self._hub.loop
            loop.update_now()
            self._clock_offset = time.perf_counter() - loop.now()
        except Exception:  # noqa: BLE001 - a loop without these methods: use the fallback
            self._clock_offset = None

    def check_fork(self) -> None:
        """In a forked child, the first call forgets the parent's state (see :meth:`after_fork`)."""
        if os.getpid() != self._pid:
            self.after_fork()

    def after_fork(self) -> None:
        """Forget the parent's state; restart the monitor thread if gevent did not."""
        self._pid = os.getpid()
        self._pending.clear()
        self._ended_at.clear()
        self.calibrate()
        self._last_report = None
        self._suppressed = 0
        monitor = getattr(self._hub, "periodic_monitoring_thread", None)
        on_fork = getattr(monitor, "_on_fork", None)
        if callable(on_fork) and getattr(monitor, "pid", os.getpid()) != os.getpid():
            # gevent's hub.reinit() does this after its own fork; a raw fork skips it.
            on_fork()
        self.ensure_switch_tracer()

    def ensure_switch_tracer(self) -> None:
        """Put gevent's switch tracer back if something removed it (in the hub's thread).

        The monitor sees blocks through a per-thread greenlet trace function.
        In a child forked after a thread-pool thread ran a hub of its own,
        gevent garbage-collects that hub in the main thread and its clean-up
        uninstalls the main thread's tracer (gevent 24.2.1 to 26.9 at least):
        without this, the child would never see a block.
        """
        monitor = getattr(self._hub, "periodic_monitoring_thread", None)
        tracer = getattr(monitor, "_greenlet_tracer", None)
        if tracer is None or not getattr(monitor, "should_run", False):
            return
        import greenlet

        if greenlet.gettrace() is None:
            greenlet.settrace(tracer)

    # -- gevent's monitor thread ---------------------------------------------

    def on_event(self, event: Any) -> None:
        """gevent event subscriber; runs in the monitor thread for blocked-loop events."""
        event_class = self._event_class
        if event_class is None or not isinstance(event, event_class):
            return
        try:
            hub = getattr(event, "hub", None)
            if hub is None:  # older gevent (24.2.1) has no event.hub: compare threads
                if _root(event.greenlet) is not self._root:
                    return
                hub = self._hub
            elif hub is not self._hub:
                return  # another thread's hub (a thread-pool worker's, say): not ours to report
            info = event.info
            self.note_block(hub, event.greenlet, float(event.blocking_time), lambda: blocked_stack(info))
        except Exception:  # noqa: BLE001 - nothing may escape into gevent's monitor thread
            pass

    def note_block(self, hub: Any, greenlet: Any, blocking_time: float, stack: Callable[[], str]) -> None:
        """Note a block of this reporter's hub (in gevent's monitor thread); ``stack`` is read only if it is new."""
        key = id(hub)
        if key in self._pending:
            return  # the block already noted is still going on
        now = time.perf_counter()
        if now - self._ended_at.get(key, -blocking_time) < blocking_time:
            # A new block needs a whole quiet period after the hub ran; this
            # report was delayed (a loaded machine) and is about the block just ended.
            return
        started = now - blocking_time  # the latest the block can have begun
        offset = self._clock_offset
        if offset is not None:
            # Reading the clock of a loop blocked in another thread: it is not moving.
            loop_started = hub.loop.now() + offset
            if started - _MAX_LOOKBACK < loop_started < started:
                started = loop_started
        block = Block(
            started=started,
            greenlet_name=greenlet_name(greenlet),
            greenlet=_weak(greenlet),
            stack=stack(),
        )
        if self._pending.setdefault(key, block) is not block:
            return
        hub.loop.run_callback_threadsafe(self._block_ended, key)

    # -- the hub's thread ----------------------------------------------------

    def _block_ended(self, key: int) -> None:
        # In the hub greenlet, the first time it runs after the block.
        now = time.perf_counter()
        self._ended_at[key] = now  # before the pop: on_event checks in the other order
        block = self._pending.pop(key, None)
        if block is None:
            return
        duration = now - block.started
        # Read now, while the greenlet is most likely still inside the span it blocked in.
        block.context = _context_of(block.greenlet())
        from gevent import spawn_raw

        spawn_raw(self._report, block, duration)

    def _report(self, block: Block, duration: float) -> None:
        try:
            self.check_fork()  # the parent's last report must not silence the child's first
            self._histogram.record(duration)
            now = time.monotonic()
            if self._last_report is not None and now - self._last_report < self._report_interval:
                self._suppressed += 1
                return
            suppressed, self._suppressed = self._suppressed, 0
            self._last_report = now
            self._emit(block, duration, suppressed)
        except Exception as exc:  # noqa: BLE001 - telemetry must not hurt the application
            if not self._report_failed:
                self._report_failed = True
                logger.debug("%sreporting a blocked loop failed (%s: %s).", PREFIX, type(exc).__name__, exc)

    def _emit(self, block: Block, duration: float, suppressed: int) -> None:
        now_ns = time.time_ns()
        self._logger.emit(
            LogRecord(
                timestamp=now_ns - int(duration * 1e9),
                observed_timestamp=now_ns,
                context=block.context or Context(),
                severity_text="WARN",
                severity_number=SeverityNumber.WARN,
                body=f"gevent event loop blocked for {duration:.3f} s by greenlet {block.greenlet_name}",
                attributes={
                    "code.stacktrace": block.stack,
                    "gevent.greenlet.name": block.greenlet_name,
                    "gevent.loop.block.duration": duration,
                    "gevent.loop.block.suppressed": suppressed,
                },
                event_name=BLOCKED_EVENT,
            )
        )


class _GeventCheck:
    """gevent's blocking check, or a lighter one of the same meaning when the reporter alone hears of blocks.

    gevent's monitor thread calls its check every ``max_blocking_time``; each
    time the hub has not run since the previous call, it builds a full report
    before telling the subscribers: the blocked stack, and every greenlet and
    thread of the process with its stack (it walks all the objects the garbage
    collector tracks). That takes milliseconds, holding the GIL that the blocked
    hub's thread needs: a worker saturated by requests is "blocked" most of the
    time and pays for several such reports a second. The reporter reads only
    the blocked stack, and only for a block it has not noted yet. When gevent
    does not print its reports and nothing else subscribes to gevent's events,
    this check asks gevent's switch tracer the same question
    (``did_block_hub``) and hands the reporter the blocked greenlet and, for
    a new block only, the blocked thread's stack; otherwise gevent's own
    check runs.
    """

    __slots__ = ("_gevent_check", "_reporter", "_tracer", "noted", "skipped")

    def __init__(self, reporter: BlockReporter, gevent_check: Any, tracer: Any) -> None:
        self._reporter = reporter
        self._gevent_check = gevent_check
        self._tracer = tracer
        #: Blocked periods handed to the reporter, and those of a block it had already noted.
        self.noted = 0
        self.skipped = 0

    def __call__(self, hub: Any) -> Any:
        # In gevent's monitor thread.
        reporter = self._reporter
        try:
            alone = reporter._subscribed and not reporter.reports_repeats()
        except Exception:  # noqa: BLE001 - when in doubt, gevent's own check
            alone = False
        if not alone:
            return self._gevent_check(hub)
        try:
            did_block = self._tracer.did_block_hub(hub)
            if not did_block:
                return None
            if id(hub) in reporter._pending:
                self.skipped += 1
                return None
            self.noted += 1
            from gevent import config

            reporter.note_block(hub, did_block[1], float(config.max_blocking_time), lambda: _thread_stack(hub))
        except Exception:  # noqa: BLE001 - nothing may escape into gevent's monitor thread
            pass
        return None


def _thread_stack(hub: Any) -> str:
    """The stack of the hub's thread, formatted as gevent's report gives it."""
    frame = sys._current_frames().get(hub.thread_ident)
    if frame is None:
        return f"Unknown: No thread found for hub {hub!r}\n"
    return "".join(traceback.format_stack(frame))


def _context_of(greenlet: Any) -> Context:
    """The OpenTelemetry context the blocking greenlet had, so the record joins its trace."""
    try:
        carrier = greenlet.gr_context if greenlet is not None else None
        if carrier is not None:
            found = carrier.run(get_current)
            if isinstance(found, Context):
                return found
    except Exception:  # noqa: BLE001 - a foreign or finished greenlet: no trace link
        pass
    return Context()


def _set_by_environment(config: Any, name: str) -> bool:
    """Whether the user set gevent's own variable for the setting ``name``."""
    setting = config.settings.get(name)
    key = getattr(setting, "environment_key", None)
    return bool(key and os.environ.get(key, "").strip())
