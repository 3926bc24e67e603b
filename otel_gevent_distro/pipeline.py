"""The batching pipeline behind the span and log record processors.

Owns :class:`BatchPipeline` (queue, drop counting, export in batches and
chunks, flush and shutdown), :class:`PipelineOwner` (what both processors
share), :class:`DropReporter` and :class:`ChunkSizer`. It never raises into
the application's emit path.

*Never blocking the hub.* Exporting is mostly CPU work (protobuf encoding,
about 0.1 ms per span here: one 512-span call held the loop for 55 ms). In
greenlet mode each batch goes to the exporter in chunks sized so that one
call holds the hub for about :data:`CHUNK_BUDGET_S` before its first network
wait (measured with a loop callback queued just before each call, see
:class:`ChunkSizer`), and the event loop runs one full iteration between
chunks (:func:`~otel_gevent_distro.hub.cooperative_yield`). Each call also
pays a fixed per-request cost, and with a slow collector a round trip, so
small chunks cap throughput: when the queue backs up they grow back to whole
batches (:meth:`BatchPipeline._chunk_size`). At exit batches go out whole.

*Back-pressure.* From :data:`BACKLOG_PRESSURE` of the queue on, the emitting
greenlet lets the event loop run once (see :mod:`otel_gevent_distro.hub`).

*Batching.* Woken, the worker exports only full batches; everything queued
goes out once per schedule delay, as the SDK does. The emit path never
signals per item: it signals once when the queue reaches the batch size,
then not again until the worker has drained.

*Flushing* never needs the worker: ``force_flush``, shutdown (``atexit``,
so also ``sys.exit`` from a SIGTERM handler) and the flush before a
``multiprocessing`` child's ``os._exit`` export from the calling greenlet
or thread, under a lock shared with the worker, bounded by the export
timeout.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from otel_gevent_distro import forksafe
from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.exit_flush import wait_for_idle_pool_thread
from otel_gevent_distro.exporter_calls import (
    ERROR_LOG_INTERVAL_S,
    EXPORTER_SHUTDOWN_GRACE_S,
    Exporter,
    RateLimiter,
    shutdown_exporter,
    succeeded,
    suppressed,
)
from otel_gevent_distro.hub import bounded_at_exit, cooperative_yield, make_way_for_export, threading_patched
from otel_gevent_distro.pipeline_options import BatchOptions
from otel_gevent_distro.worker import Worker, start_all

#: How long one exporter call may hold the gevent hub before its first network wait, roughly.
CHUNK_BUDGET_S = 0.008
#: Chunk bounds: never fewer items per call than this (unless the batch is smaller).
MIN_CHUNK = 16
#: Items per call until the first cost measurement exists.
INITIAL_CHUNK = 16
#: Queue fill (fraction) from which chunks grow, and from which they are whole batches.
BACKLOG_LOW = 0.25
BACKLOG_HIGH = 0.5
#: Queue fill (fraction) from which emitting greenlets let the event loop run.
BACKLOG_PRESSURE = 0.75
#: At most one warning line about dropped items per this many seconds.
DROP_LOG_INTERVAL_S = 10.0

_SHUT_DOWN = -2


def _deadline_passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _acquire(lock: Any, deadline: float | None) -> bool:
    if deadline is None:
        return bool(lock.acquire())
    return bool(lock.acquire(True, max(0.0, deadline - time.monotonic())))


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
        self._generation = _SHUT_DOWN if self._shutdown else forksafe.NOT_ENTERED
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
            make_way_for_export()

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
        if succeeded(result):
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
