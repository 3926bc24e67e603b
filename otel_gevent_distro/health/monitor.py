"""The health monitor: gevent's health as OpenTelemetry telemetry, one monitor per process.

Meter ``otel_gevent_distro.health``:

* ``gevent.loop.block.duration`` (histogram, ``s``): how long a greenlet kept
  the event loop from running, for each block gevent's monitor thread saw
  (longer than ``max_blocking_time``). See :mod:`otel_gevent_distro.health.loop_blocking`,
  which also emits the log record ``gevent.loop.blocked`` with the stack.
* ``gevent.loop.lag`` (histogram, ``s``): how late a timer of
  ``OTEL_PYTHON_GEVENT_HEALTH_INTERVAL`` seconds wakes its greenlet, measured
  once per interval: the delay every waiting greenlet suffers.
* ``gevent.greenlet.count`` (observable up-down counter, ``{greenlet}``):
  gevent ``Greenlet`` objects started and not yet finished; observed only once
  the lag probe has measured in this process, so a program that exits before
  its loop ran one interval (``pip``, a management command) exports nothing. Counted with a
  spawn callback keeping weak references; nothing scans the garbage collector.

:func:`start_health_monitoring` is what start-up calls once the SDK
is built: idempotent, never raising, and a no-op (one debug line) when the
option is off or gevent has not patched the process.

What this module must never do:

* start a thread in an at-fork hook. It registers no fork hook at all: in a
  child forked through gevent, ``hub.reinit()`` restarts gevent's monitor
  thread, and the lag probe notices the new pid and resets the per-process
  state itself, in the child's own event loop;
* keep the event loop alive: the probe sleeps on an unreferenced timer, so
  ``gevent.wait()`` and the end of the program behave as without it;
* call the SDK from gevent's monitor thread (see ``loop_blocking``).
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Iterable
from typing import Any

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.health.loop_blocking import REPORT_INTERVAL, BlockReporter
from otel_gevent_distro.settings import Settings, get_settings
from otel_gevent_distro.version import __version__

#: Instrumentation scope of every health instrument and log record.
SCOPE = "otel_gevent_distro.health"

BLOCK_DURATION = "gevent.loop.block.duration"
LOOP_LAG = "gevent.loop.lag"
GREENLET_COUNT = "gevent.greenlet.count"

#: Buckets for loop blocks (seconds), from gevent's 0.1 s default threshold up.
BLOCK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
#: Buckets for loop lag (seconds): a healthy loop lags well under a millisecond.
LAG_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class HealthMonitor:
    """The instruments, the lag probe, the greenlet count and the block reporter of one process."""

    def __init__(
        self,
        interval: float = 1.0,
        *,
        meter_provider: Any = None,
        logger_provider: Any = None,
        report_interval: float = REPORT_INTERVAL,
    ) -> None:
        self.interval = interval
        self._meter_provider = meter_provider
        self._logger_provider = logger_provider
        self._report_interval = report_interval
        self._running = False
        #: Weak references to started greenlets; each removes itself when its greenlet is freed.
        self._live: set[weakref.ref[Any]] = set()
        self._track = _tracker(self._live)
        self._probe: Any = None
        self._blocking: BlockReporter | None = None
        self._lag: Any = None
        self._probe_failed = False
        #: The process in which the lag probe last measured: until the loop has run one
        #: interval here, nothing is observed, so a short-lived process exports nothing.
        self._measured_in_pid: int | None = None
        #: Whether gevent's blocked-loop events are being reported.
        self.reports_blocking = False

    def start(self) -> None:
        """Create the instruments and start measuring; call in the thread that runs the hub."""
        import gevent
        from opentelemetry._logs import get_logger
        from opentelemetry.metrics import CallbackOptions, Observation, get_meter

        if self._running:
            return
        meter = get_meter(SCOPE, __version__, self._meter_provider)
        self._lag = meter.create_histogram(
            LOOP_LAG,
            unit="s",
            description="How late a periodic timer wakes its greenlet: the delay every waiting greenlet suffers.",
            explicit_bucket_boundaries_advisory=LAG_BUCKETS,
        )
        block_duration = meter.create_histogram(
            BLOCK_DURATION,
            unit="s",
            description="How long a greenlet kept the gevent event loop from running (blocks over max_blocking_time).",
            explicit_bucket_boundaries_advisory=BLOCK_BUCKETS,
        )

        def observe_greenlets(options: CallbackOptions) -> Iterable[Observation]:
            if not self._running or self._measured_in_pid != os.getpid():
                return []
            return [Observation(self.live_greenlets())]

        meter.create_observable_up_down_counter(
            GREENLET_COUNT,
            callbacks=[observe_greenlets],
            unit="{greenlet}",
            description="gevent greenlets started and not yet finished.",
        )

        hub = gevent.get_hub()
        self._running = True
        gevent.Greenlet.add_spawn_callback(self._track)
        otel_logger = get_logger(SCOPE, __version__, self._logger_provider)
        self._blocking = BlockReporter(hub, block_duration, otel_logger, self._report_interval)
        self.reports_blocking = self._blocking.start()
        self._probe = gevent.spawn_raw(self._run_probe)

    def stop(self) -> None:
        """Stop measuring (the instruments stay registered but report nothing)."""
        import gevent

        self._running = False
        gevent.Greenlet.remove_spawn_callback(self._track)
        if self._blocking is not None:
            self._blocking.stop()
        probe, self._probe = self._probe, None
        if probe is not None and not probe.dead:
            gevent.kill(probe)

    def live_greenlets(self) -> int:
        """gevent ``Greenlet`` objects started since monitoring began and not finished."""
        count = 0
        for reference in list(self._live):  # a copy: greenlets in other threads may start meanwhile
            greenlet = reference()
            if greenlet is not None and not greenlet.dead:
                count += 1
        return count

    def _run_probe(self) -> None:
        from gevent import sleep

        interval = self.interval
        while self._running:
            started = time.perf_counter()
            # ref=False: this timer never keeps the loop (or gevent.wait()) alive.
            sleep(interval, ref=False)
            lag = time.perf_counter() - started - interval
            if not self._running:
                return
            try:
                self._check_fork()
                self._lag.record(lag if lag > 0.0 else 0.0)
                self._measured_in_pid = os.getpid()
                if self._blocking is not None:
                    self._blocking.calibrate()
                    self._blocking.ensure_switch_tracer()
            except Exception as exc:  # noqa: BLE001 - telemetry must not hurt the application
                if not self._probe_failed:
                    self._probe_failed = True
                    logger.debug("%sloop-lag probe failed (%s: %s).", PREFIX, type(exc).__name__, exc)

    def _check_fork(self) -> None:
        if self._blocking is not None:
            self._blocking.check_fork()


def _tracker(live: set[weakref.ref[Any]]) -> Any:
    """A spawn callback adding a self-removing weak reference to ``live``.

    A plain set of weak references whose callback is the C-level
    ``set.discard``, rather than a ``weakref.WeakSet``, whose bookkeeping runs
    in Python; the callback's cost is measured in ``benchmarks/health_costs.py``.
    """
    add, discard, ref = live.add, live.discard, weakref.ref

    def track(greenlet: Any) -> None:
        add(ref(greenlet, discard))

    return track


_monitor: HealthMonitor | None = None


def start_health_monitoring(
    settings: Settings | None = None,
    *,
    meter_provider: Any = None,
    logger_provider: Any = None,
) -> HealthMonitor | None:
    """Start reporting gevent's health for this process; call after the SDK is built.

    Uses the global meter and logger providers unless others are given.
    Returns the process's monitor, or ``None`` when monitoring is off, gevent
    is not patched or start-up failed. Calling it again returns the same
    monitor; a forked child keeps its parent's monitor, which resets itself.
    """
    global _monitor
    try:
        settings = settings if settings is not None else get_settings()
        if not settings.health:
            logger.debug("%sOTEL_PYTHON_GEVENT_HEALTH=false: gevent health is not reported.", PREFIX)
            return None
        from otel_gevent_distro.runtime.gevent_state import is_patched

        if not is_patched():
            logger.debug("%sgevent has not patched this process: gevent health is not reported.", PREFIX)
            return None
        if _monitor is not None:
            return _monitor
        monitor = HealthMonitor(
            settings.health_interval, meter_provider=meter_provider, logger_provider=logger_provider
        )
        try:
            monitor.start()
        except BaseException:
            monitor.stop()
            raise
        _monitor = monitor
        logger.debug(
            "%sgevent health reported every %g s (loop blocking %s).",
            PREFIX,
            settings.health_interval,
            "on" if monitor.reports_blocking else "off",
        )
        return monitor
    except Exception as exc:  # noqa: BLE001 - telemetry must not take the application down
        logger.warning("%sgevent health monitoring could not start (%s: %s).", PREFIX, type(exc).__name__, exc)
        return None


def stop_health_monitoring() -> None:
    """Stop this process's monitor, if any (for benchmarks and orderly shut-down)."""
    global _monitor
    monitor, _monitor = _monitor, None
    if monitor is not None:
        monitor.stop()
