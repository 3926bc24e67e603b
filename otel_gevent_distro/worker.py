"""The background export worker shared by spans, log records and metrics.

Owns: the options of the batching pipelines (``OTEL_BSP_*``, ``OTEL_BLRP_*``
and ``OTEL_METRIC_*`` read once, validated like the SDK), the
:class:`Worker` that runs an export step in the background, the
:class:`BatchPipeline` (queue, drop counting, export in batches) behind the
span and log record processors, and the per-process registry of workers.

It must never start a thread or greenlet in an at-fork hook (children only
reset state, see :mod:`otel_gevent_distro.forksafe`), never block the gevent
hub, and never raise into the application's emit path.

Design
------
*Worker type.* Decided when a worker starts, per process. When ``threading``
is monkey-patched the worker is a greenlet on the main thread's hub: the
exporters then use gevent's sockets (and gRPC's gevent mode) as they were
built to, an idle worker costs nothing, and no greenlet-backed
``threading.Thread`` exists to confuse ``threading`` bookkeeping at exit. A
real thread in a patched process would drive gevent sockets from a second
hub, which gRPC's gevent mode does not support. Otherwise the worker is a
plain daemon thread, like the SDK's.

*Never blocking the hub.* Exporting is mostly CPU work (protobuf encoding,
about 0.1 ms per span here: one 512-span call held the loop for 55 ms). In
greenlet mode each batch goes to the exporter in chunks sized so that one
call holds the hub for about :data:`CHUNK_BUDGET_S` before its first network
wait (measured with a loop callback queued just before each call, see
:class:`ChunkSizer`), and the event loop runs one full iteration between
chunks (:func:`cooperative_yield`). Each call also pays a fixed per-request
cost, and with a slow collector a round trip, so small chunks cap
throughput: when the queue backs up they grow back to whole batches
(:meth:`BatchPipeline._chunk_size`). At exit batches go out whole.

*Back-pressure.* A greenlet that never waits (a saturated keep-alive
handler) keeps the loop from polling sockets, so the worker's network waits
starve and the queue overflows: measured with gunicorn's gevent worker under
load, the first export's connect waited 1.6-2.3 s and 35-59 % of the spans
were dropped. From :data:`BACKLOG_PRESSURE` of the queue on, the emitting
greenlet runs one loop iteration itself (:func:`_make_way_for_export`).

*Batching.* Woken, the worker exports only full batches; everything queued
goes out once per schedule delay, as the SDK does.

*Wake-ups.* The emit path never signals per item: it signals once when the
queue reaches the batch size, then not again until the worker has drained.
In greenlet mode the signal is a ``hub.loop.async_()`` watcher, whose
``send()`` is safe from any OS thread (for example gevent's ``ThreadPool``),
unlike a gevent ``Event``; the schedule delay is a loop timer. Both are
unreferenced, so the worker never keeps ``gevent.wait()`` or the loop alive.
In thread mode the signal is a ``threading.Event``.

*Processes.* A worker records the fork generation it started in. After a
fork the child's worker is idle until the first item is emitted (or, for
metrics, the first collect or flush) in that process; then every registered
worker of the process starts (:func:`start_all`). A child that execs never
starts anything. A greenlet inherited through gevent's fork notices that its
run token was reset and ends at its next wake-up. Flushing never needs the
worker: ``force_flush``, shutdown (``atexit``, so also ``sys.exit`` from a
SIGTERM handler) and the flush before a ``multiprocessing`` child's
``os._exit`` export from the calling greenlet or thread, under a lock shared
with the worker, bounded by the export timeout.
"""

from __future__ import annotations

import collections
import contextlib
import inspect
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry.instrumentation.utils import suppress_instrumentation

from otel_gevent_distro import forksafe
from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.exit_flush import wait_for_idle_pool_thread, warm_resolver

#: How long one exporter call may hold the gevent hub before its first network wait, roughly.
CHUNK_BUDGET_S = 0.008
#: Chunk bounds: never fewer items per call than this (unless the batch is smaller).
MIN_CHUNK = 16
#: Items per call until the first cost measurement exists.
INITIAL_CHUNK = 16
#: Queue fill (fraction) from which chunks grow, and from which they are whole batches.
BACKLOG_LOW = 0.25
BACKLOG_HIGH = 0.5
#: Queue fill (fraction) from which emitting greenlets let the event loop run (see :func:`_make_way_for_export`).
BACKLOG_PRESSURE = 0.75
#: Those yields happen at most this often, process-wide.
PRESSURE_YIELD_INTERVAL_S = 0.001
#: Time ``exporter.shutdown()`` gets at shutdown even when the export timeout is used up.
EXPORTER_SHUTDOWN_GRACE_S = 1.0
#: At most one warning line about dropped items per this many seconds.
DROP_LOG_INTERVAL_S = 10.0
#: At most one warning line about failing exports per this many seconds.
ERROR_LOG_INTERVAL_S = 10.0

_NOT_ENTERED = -1
_SHUT_DOWN = -2


# --------------------------------------------------------------------------
# Options
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchOptions:
    """The four batching options of a span or log record pipeline."""

    max_queue_size: int = 2048
    schedule_delay_millis: float = 5000
    max_export_batch_size: int = 512
    export_timeout_millis: float = 30000


@dataclass(frozen=True)
class BatchVariables:
    """The environment variable names of one signal's batching options."""

    max_queue_size: str
    schedule_delay: str
    max_export_batch_size: str
    export_timeout: str


@dataclass(frozen=True)
class MetricOptions:
    """The periodic metric reader's options."""

    export_interval_millis: float = 60000
    export_timeout_millis: float = 30000


def _invalid(name: str, raw: str, accepted: str, default: float) -> None:
    logger.warning(
        "%s%s=%r is not valid (accepted: %s); using the SDK default %s.", PREFIX, name, raw, accepted, default
    )


def env_number(environ: Mapping[str, str], name: str, default: float, parse: Callable[[str], float] = int) -> float:
    """A positive number from ``environ``; unset or empty gives ``default``, a bad value one warning."""
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    accepted = "a positive integer" if parse is int else "a positive number"
    try:
        value = parse(raw.strip())
    except ValueError:
        _invalid(name, raw, accepted, default)
        return default
    if not value > 0:
        _invalid(name, raw, accepted, default)
        return default
    return value


def _positive(value: float, message: str) -> float:
    if not value > 0:
        raise ValueError(message)
    return value


def resolve_batch_options(
    variables: BatchVariables,
    max_queue_size: int | None = None,
    schedule_delay_millis: float | None = None,
    max_export_batch_size: int | None = None,
    export_timeout_millis: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> BatchOptions:
    """Arguments win over the environment, which wins over the SDK defaults.

    Bad arguments raise ``ValueError`` with the SDK's messages; bad
    environment values give one warning each and the SDK default is used,
    so a typo in a deployment never stops the application.
    """
    env = os.environ if environ is None else environ
    defaults = BatchOptions()
    explicit_sizes = max_queue_size is not None or max_export_batch_size is not None
    if max_queue_size is None:
        max_queue_size = int(env_number(env, variables.max_queue_size, defaults.max_queue_size))
    else:
        _positive(max_queue_size, "max_queue_size must be a positive integer.")
    if schedule_delay_millis is None:
        schedule_delay_millis = env_number(env, variables.schedule_delay, defaults.schedule_delay_millis)
    else:
        _positive(schedule_delay_millis, "schedule_delay_millis must be positive.")
    if max_export_batch_size is None:
        max_export_batch_size = int(env_number(env, variables.max_export_batch_size, defaults.max_export_batch_size))
    else:
        _positive(max_export_batch_size, "max_export_batch_size must be a positive integer.")
    if export_timeout_millis is not None and not export_timeout_millis > 0:
        # The SDK never uses this value; here it bounds flush and shutdown, so it must be positive.
        logger.warning("%sexport_timeout_millis=%r is not positive; ignoring it.", PREFIX, export_timeout_millis)
        export_timeout_millis = None
    if export_timeout_millis is None:
        export_timeout_millis = env_number(env, variables.export_timeout, defaults.export_timeout_millis)
    if max_export_batch_size > max_queue_size:
        if explicit_sizes:
            raise ValueError("max_export_batch_size must be less than or equal to max_queue_size.")
        logger.warning(
            "%s%s=%d is larger than the queue size %d; using %d.",
            PREFIX,
            variables.max_export_batch_size,
            max_export_batch_size,
            max_queue_size,
            max_queue_size,
        )
        max_export_batch_size = max_queue_size
    return BatchOptions(max_queue_size, schedule_delay_millis, max_export_batch_size, export_timeout_millis)


def resolve_metric_options(
    interval_variable: str,
    timeout_variable: str,
    export_interval_millis: float | None = None,
    export_timeout_millis: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> MetricOptions:
    """Like :func:`resolve_batch_options` for ``OTEL_METRIC_EXPORT_INTERVAL``/``_TIMEOUT`` (floats, ``inf`` allowed)."""
    env = os.environ if environ is None else environ
    defaults = MetricOptions()
    if export_interval_millis is None:
        export_interval_millis = env_number(env, interval_variable, defaults.export_interval_millis, float)
    else:
        _positive(
            export_interval_millis,
            f"interval value {export_interval_millis} is invalid and needs to be larger than zero.",
        )
    if export_timeout_millis is None:
        export_timeout_millis = env_number(env, timeout_variable, defaults.export_timeout_millis, float)
    return MetricOptions(export_interval_millis, export_timeout_millis)


# --------------------------------------------------------------------------
# gevent helpers (gevent is imported only when the process is patched)
# --------------------------------------------------------------------------

_main_hub: Any = None


def threading_patched() -> bool:
    """True when gevent has monkey-patched ``threading`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


def _on_main_native_thread() -> bool:
    if sys.platform.startswith("linux"):
        # The main thread's kernel id is the process id, also right after a fork.
        return threading.get_native_id() == os.getpid()
    return threading.get_native_id() == threading.main_thread().native_id


def _note_main_hub() -> None:
    """Remember the main thread's hub, so a worker can be started on it from a real thread later."""
    global _main_hub
    if _main_hub is None and threading_patched() and _on_main_native_thread():
        import gevent

        _main_hub = gevent.get_hub()


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


def _make_way_for_export() -> None:
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
    if now - _last_pressure_yield < PRESSURE_YIELD_INTERVAL_S or sys.is_finalizing() or not _on_main_native_thread():
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


def _deadline_passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _acquire(lock: Any, deadline: float | None) -> bool:
    if deadline is None:
        return bool(lock.acquire())
    return bool(lock.acquire(True, max(0.0, deadline - time.monotonic())))


# --------------------------------------------------------------------------
# Wake-up signals
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# The worker
# --------------------------------------------------------------------------

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
        _note_main_hub()

    def _reset_after_fork(self) -> None:
        #: "idle", "greenlet" or "thread".
        self.mode = "idle"
        self._token: object | None = None
        self._signal: _Signal | None = None
        self._generation = _NOT_ENTERED
        self._start_requested = _NOT_ENTERED
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
        if _on_main_native_thread():
            # gevent sockets without patched threads: the exit flush still resolves on the main hub.
            warm_resolver()

    def _start_greenlet(self) -> None:
        if _on_main_native_thread():
            self._spawn_on_main_hub()
            return
        # A real OS thread (gevent's ThreadPool): ask the main hub to start it.
        hub = _main_hub
        if hub is None or self._start_requested == forksafe.generation:
            return
        self._start_requested = forksafe.generation
        hub.loop.run_callback_threadsafe(self._spawn_on_main_hub)

    def _spawn_on_main_hub(self) -> None:
        global _main_hub
        import gevent

        if self.running or self._stopping:
            return
        hub = gevent.get_hub()
        _main_hub = hub
        token, signal = object(), _HubSignal(hub)
        self._token, self._signal, self._generation, self.mode = token, signal, forksafe.generation, "greenlet"
        self._task = gevent.spawn(self._run, token, signal)
        # Exports at interpreter exit need a resolver thread that already exists.
        warm_resolver()

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


# --------------------------------------------------------------------------
# Batching pipeline (spans, log records)
# --------------------------------------------------------------------------


class Exporter(Protocol):
    def export(self, batch: Sequence[Any], /) -> Any: ...

    def shutdown(self) -> Any: ...


class RateLimiter:
    """True at most once per ``interval_s`` seconds."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last = -math.inf

    def due(self) -> bool:
        return time.monotonic() - self._last >= self._interval_s

    def take(self) -> bool:
        now = time.monotonic()
        if now - self._last < self._interval_s:
            return False
        self._last = now
        return True


class DropReporter:
    """Reports dropped items in one warning line at most every :data:`DROP_LOG_INTERVAL_S`.

    Each line gives the count since the previous line and the total, so
    nothing is silent; :meth:`report` at shutdown prints what is left.
    """

    def __init__(self, what: str, capacity: int, interval_s: float = DROP_LOG_INTERVAL_S) -> None:
        self._what = what
        self._capacity = capacity
        self._limiter = RateLimiter(interval_s)
        self._unreported = 0
        self._total = 0
        self.lines = 0

    def add(self, count: int = 1) -> None:
        self._unreported += count
        self._total += count
        if self._limiter.due():
            self.report()

    def report_if_due(self) -> None:
        if self._unreported and self._limiter.due():
            self.report()

    def report(self) -> None:
        count, self._unreported = self._unreported, 0
        if not count:
            return
        # Mark the line written before logging: the line may come back to a
        # full log record queue through a logging handler.
        self._limiter.take()
        self.lines += 1
        logger.warning(
            "%sexport queue full (%d %s): dropped %d %s (%d in total). The collector is slow or "
            "unreachable, or telemetry is produced faster than it can be exported.",
            PREFIX,
            self._capacity,
            self._what,
            count,
            self._what,
            self._total,
        )


class ChunkSizer:
    """How many items one exporter call may take so that it holds the hub for about ``budget_s``.

    Learns from recent calls how long each held the hub per item (per-call
    overhead included) and takes a low quartile, so one slow sample (the
    first connection, a descheduled CPU) does not shrink the chunks for good.
    """

    def __init__(self, maximum: int, budget_s: float = CHUNK_BUDGET_S) -> None:
        self._maximum = maximum
        self._budget_s = budget_s
        self._per_item: collections.deque[float] = collections.deque(maxlen=16)

    def size(self) -> int:
        if not self._per_item:
            return min(self._maximum, INITIAL_CHUNK)
        ordered = sorted(self._per_item)
        per_item = ordered[len(ordered) // 4]
        if per_item <= 0:
            return self._maximum
        return max(min(MIN_CHUNK, self._maximum), min(self._maximum, int(self._budget_s / per_item)))

    def record(self, items: int, held_seconds: float) -> None:
        if items > 0:
            self._per_item.append(held_seconds / items)


def _succeeded(result: Any) -> bool:
    # SpanExportResult, LogRecordExportResult, LogExportResult, MetricExportResult
    # all name their success SUCCESS; an exporter returning nothing is not failing.
    return result is None or getattr(result, "name", "SUCCESS") == "SUCCESS"


def shutdown_exporter(exporter: Any, timeout_millis: float) -> None:
    """``exporter.shutdown()``, passing the time left when it accepts ``timeout_millis``."""
    try:
        parameters = inspect.signature(exporter.shutdown).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    try:
        if "timeout_millis" in parameters:
            exporter.shutdown(timeout_millis=max(0.0, timeout_millis))
        else:
            exporter.shutdown()
    except Exception:  # noqa: BLE001 - shutting down must finish
        logger.warning("%sexporter shutdown failed.", PREFIX, exc_info=True)


def suppressed() -> Any:
    """A context manager that keeps instrumentations from tracing the exporter's own requests.

    Imported with this module, not on first use: a first import on the hub
    stalled it for about 100 ms.
    """
    return suppress_instrumentation()


class PipelineOwner:
    """What the distro's span and log record processors share: their pipeline, its counters, shutdown."""

    _pipeline: BatchPipeline

    @property
    def pipeline(self) -> BatchPipeline:
        """The queue and worker behind this processor."""
        return self._pipeline

    @property
    def exported(self) -> int:
        return self._pipeline.exported

    @property
    def failed(self) -> int:
        return self._pipeline.failed

    @property
    def dropped(self) -> int:
        return self._pipeline.dropped

    def shutdown(self) -> None:
        self._pipeline.shutdown()


class BatchPipeline:
    """Queue, batch and export items of one signal; shared by the span and log record processors.

    Counters (of this process): ``exported``, ``failed`` (the exporter said
    no or raised), ``dropped`` (queue full, or still queued when shutdown ran
    out of time) and ``dropped_after_shutdown``.
    """

    def __init__(self, exporter: Exporter, options: BatchOptions, what: str) -> None:
        self.exporter = exporter
        self.options = options
        self._what = what
        self._max_queue_size = options.max_queue_size
        self._batch_size = options.max_export_batch_size
        self._timeout_s = options.export_timeout_millis / 1000
        self._shutdown = False
        self._chunks = ChunkSizer(self._batch_size)
        self._pressure_mark = max(self._batch_size, int(self._max_queue_size * BACKLOG_PRESSURE))
        self._reset_after_fork()
        delay_s = options.schedule_delay_millis / 1000
        self._delay_s = delay_s
        self.worker = Worker(f"{what}-export", delay_s, self._scheduled_export, self._ready, self._until_full_export)
        forksafe.register_reset(self._reset_after_fork)
        forksafe.register_exit_flush(self._flush_before_exit)

    def _reset_after_fork(self) -> None:
        # Items queued before the fork stay the parent's to export.
        self._queue: collections.deque[Any] = collections.deque()
        self._lock: Any = None
        self._wake_pending = False
        self._cooperative = False
        self._next_full_export = time.monotonic() + self.options.schedule_delay_millis / 1000
        self._generation = _SHUT_DOWN if self._shutdown else _NOT_ENTERED
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self.dropped_after_shutdown = 0
        self._drops = DropReporter(self._what, self._max_queue_size)
        self._errors = RateLimiter(ERROR_LOG_INTERVAL_S)

    # -- emit path -------------------------------------------------------

    def emit(self, item: Any) -> None:
        """Queue one item; never blocks, never raises."""
        if self._generation != forksafe.generation and not self._enter_from_emit():
            return
        queue = self._queue
        if len(queue) >= self._max_queue_size:
            self.dropped += 1
            self._drops.add()
            return
        queue.append(item)
        if len(queue) >= self._batch_size and not self._wake_pending:
            self._wake_pending = True
            self.worker.wake()
        if len(queue) >= self._pressure_mark and self._cooperative:
            _make_way_for_export()

    def _enter_from_emit(self) -> bool:
        if self._shutdown:
            self.dropped_after_shutdown += 1
            return False
        self._adopt_process()
        start_all()
        return True

    def _adopt_process(self) -> None:
        """First use in this process: a lock of the right kind (gevent's when patched)."""
        if self._generation == forksafe.generation:
            return
        self._cooperative = threading_patched()
        self._lock = threading.Lock()
        self._generation = forksafe.generation

    # -- export ----------------------------------------------------------

    def _ready(self) -> bool:
        return self._generation == forksafe.generation and len(self._queue) >= self._batch_size

    def _until_full_export(self) -> float:
        return self._next_full_export - time.monotonic()

    def _scheduled_export(self) -> None:
        """The worker's step: full batches when woken, everything once the schedule delay is up."""
        self._wake_pending = False
        everything = self._until_full_export() <= 0
        if everything:
            self._next_full_export = time.monotonic() + self._delay_s
        if self._generation == forksafe.generation:
            self._export_queued(None, everything)
        self._drops.report_if_due()

    def _export_queued(self, deadline: float | None, everything: bool = True, exiting: bool = False) -> bool:
        """Export what is queued now (or only full batches), batch by batch.

        Items queued meanwhile are left for later unless they make a full
        batch, so a busy process gets full batches, not a stream of small
        ones. When the process is ``exiting`` batches go out whole: hub
        latency no longer matters, and fewer calls make a stuck exit less
        likely (after a signal handler raised ``SystemExit`` somewhere in the
        event loop, a second OTLP/gRPC call in gevent mode sometimes never
        returns). False when the deadline came first.
        """
        lock = self._lock
        if lock is None or not _acquire(lock, deadline):
            return not self._queue
        try:
            owed = len(self._queue) if everything else 0
            while self._queue and (owed > 0 or len(self._queue) >= self._batch_size):
                if _deadline_passed(deadline):
                    return False
                if exiting and deadline is not None:
                    wait_for_idle_pool_thread(deadline)
                batch = self._take()
                owed -= len(batch)
                rest = self._export_batch(batch, deadline, whole=exiting)
                if rest:
                    self._queue.extendleft(reversed(rest))
                    return False
                if self._queue and self._cooperative:
                    cooperative_yield()
            return True
        finally:
            lock.release()

    def _take(self) -> list[Any]:
        queue, batch = self._queue, []
        try:
            for _ in range(self._batch_size):
                batch.append(queue.popleft())
        except IndexError:  # emptied (by shutdown) from another thread meanwhile
            pass
        return batch

    def _export_batch(self, batch: list[Any], deadline: float | None, whole: bool = False) -> list[Any]:
        """Export ``batch`` (in chunks when cooperative); returns what the deadline left unexported.

        When the call is interrupted (a signal handler raising ``SystemExit``
        in this greenlet, a ``gevent.Timeout``) the chunks not yet handed to
        the exporter go back to the queue, so shutdown can still send them.
        """
        if whole or not self._cooperative:
            self._export_chunk(batch)
            return []
        start = 0
        try:
            while start < len(batch):
                if start and _deadline_passed(deadline):
                    return batch[start:]
                size = self._chunk_size()
                chunk = batch[start : start + size]
                start += size
                self._chunks.record(len(chunk), self._export_chunk_timed(chunk))
                if start < len(batch):
                    cooperative_yield()
        except BaseException:
            self._queue.extendleft(reversed(batch[start:]))
            raise
        return []

    def _chunk_size(self) -> int:
        """The hub-budgeted chunk, growing to the whole batch as the queue backs up.

        Small chunks cost a request each; when the collector is slow they cap
        throughput. Past :data:`BACKLOG_LOW` of the queue the chunk grows, and
        from :data:`BACKLOG_HIGH` on it is the whole batch, as with the SDK's
        processor: delivering the telemetry then matters more than hub latency.
        """
        size = self._chunks.size()
        backlog = len(self._queue) / self._max_queue_size
        if backlog <= BACKLOG_LOW:
            return size
        grow = min(1.0, (backlog - BACKLOG_LOW) / (BACKLOG_HIGH - BACKLOG_LOW))
        return size + int((self._batch_size - size) * grow)

    def _export_chunk_timed(self, chunk: list[Any]) -> float:
        """Export ``chunk``; return how long the call held the hub before it first let it run."""
        import gevent

        handed_over: list[float] = []
        began = time.perf_counter()
        # Queued before the call, this callback runs as soon as the hub gets
        # control: at the exporter's first network wait, or after the call.
        marker = gevent.get_hub().loop.run_callback(lambda: handed_over.append(time.perf_counter()))
        try:
            self._export_chunk(chunk)
        finally:
            ended = time.perf_counter()
            marker.stop()
        return (handed_over[0] if handed_over else ended) - began

    def _export_chunk(self, chunk: list[Any]) -> None:
        try:
            with suppressed():
                result = self.exporter.export(chunk)
        except Exception:  # noqa: BLE001 - an exporter bug must not kill the worker
            self.failed += len(chunk)
            if self._errors.take():
                logger.warning("%sexporting %d %s raised.", PREFIX, len(chunk), self._what, exc_info=True)
            return
        except BaseException:
            self.failed += len(chunk)  # interrupted: whether it arrived is unknown
            raise
        if _succeeded(result):
            self.exported += len(chunk)
        else:
            self.failed += len(chunk)

    # -- flush and shutdown -----------------------------------------------

    def _deadline(self, timeout_millis: float | None) -> float:
        timeout_s = self._timeout_s
        if timeout_millis is not None:
            timeout_s = min(timeout_s, max(0.0, timeout_millis / 1000))
        return time.monotonic() + timeout_s

    def flush(self, timeout_millis: float | None = None) -> bool:
        """Export everything queued in this process, within the export timeout (or ``timeout_millis`` if shorter)."""
        if self._shutdown:
            return False
        self._adopt_process()
        return self._export_queued(self._deadline(timeout_millis))

    def _flush_before_exit(self) -> None:
        if not self._shutdown and self._queue:
            self._adopt_process()
            self._export_queued(self._deadline(None), exiting=True)

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Flush within the export timeout, report what is lost, shut the exporter down. Once."""
        if self._shutdown:
            return
        self._adopt_process()
        deadline = self._deadline(timeout_millis)
        self._shutdown = True
        self._generation = _SHUT_DOWN
        self.worker.stop()
        with bounded_at_exit(deadline):
            self._export_queued(deadline, exiting=True)
        self._drops.report()
        self._count_leftovers()
        with bounded_at_exit(max(deadline, time.monotonic() + EXPORTER_SHUTDOWN_GRACE_S)):
            shutdown_exporter(self.exporter, (deadline - time.monotonic()) * 1000)

    def _count_leftovers(self) -> None:
        left = len(self._queue)
        self._queue.clear()
        if left:
            self.dropped += left
            logger.warning(
                "%s%d %s were not exported within the export timeout (%g ms) at shutdown.",
                PREFIX,
                left,
                self._what,
                self.options.export_timeout_millis,
            )
