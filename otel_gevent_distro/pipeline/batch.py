"""The batching pipeline behind the span and log record processors.

Owns :class:`BatchPipeline` (queue, batches, flush, shutdown and the
per-process counters), :class:`PipelineOwner` (what both processors share)
and :class:`DropReporter`. Exports run on the pipeline's
:class:`~otel_gevent_distro.pipeline.worker.ExportThread`, a native OS thread.

*Emit* (``span.end()``, a logging call) appends to a ``deque`` and, when the
queue was empty or just reached a full batch, rings the thread's native
lock. It never switches greenlets, never blocks, never raises, never exports.
Telemetry made on the export thread itself (an exporter logging a retry
through a ``LoggingHandler``) is not queued: it would feed the export that
made it.

*Batching.* A full batch (``OTEL_BSP_MAX_EXPORT_BATCH_SIZE``) goes out at
once, in one exporter call; everything else once the oldest queued item has
waited the schedule delay. An idle pipeline's thread sleeps until rung.

*Flush* puts a marker in the queue and waits, cooperatively on the gevent
hub's thread, until the thread has exported everything before it, or the
timeout passed. *Shutdown* (once, from any number of threads) closes the
queue, has the thread export what is left within the export timeout and the
process's exit budget (:mod:`otel_gevent_distro.runtime.exit_budget`), waits for the
thread to end, and reports in one line every item this process did not
deliver: still queued, in flight when time ran out, refused by the collector,
dropped because the queue was full.

*Fork.* The at-fork hook gives the child an empty queue, zero counters and a
thread of its own: items queued or in flight in the parent are the parent's
to deliver, exactly once.
"""

from __future__ import annotations

import collections
import time
from typing import Any

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.pipeline import native
from otel_gevent_distro.pipeline.exporter_calls import (
    ERROR_LOG_INTERVAL_S,
    Exporter,
    RateLimiter,
    export_until,
    interrupt_at,
    prepare_export_thread,
    shutdown_exporter,
)
from otel_gevent_distro.pipeline.options import BatchOptions
from otel_gevent_distro.pipeline.worker import ExportThread, wait_released
from otel_gevent_distro.runtime import exit_budget, forksafe
from otel_gevent_distro.runtime.server_fork import after_server_fork

#: At most one warning line about dropped items per this many seconds.
DROP_LOG_INTERVAL_S = 10.0


class DropReporter:
    """Reports dropped items in one warning line at most every :data:`DROP_LOG_INTERVAL_S`.

    Each line gives the count since the previous line and the total, so
    nothing is silent. Called on the export thread, never on the emit path.
    """

    def __init__(self, what: str, capacity: int, interval_s: float = DROP_LOG_INTERVAL_S) -> None:
        self._what = what
        self._capacity = capacity
        self._limiter = RateLimiter(interval_s)
        self._reported = 0

    def report_if_due(self, total: int) -> None:
        if total > self._reported and self._limiter.take():
            count, self._reported = total - self._reported, total
            logger.warning(
                "%sexport queue full (%d %s): dropped %d %s (%d in total). The collector is slow or "
                "unreachable, or telemetry is produced faster than it can be exported.",
                PREFIX,
                self._capacity,
                self._what,
                count,
                self._what,
                total,
            )


class _Marker:
    """A flush request in the queue: settled once everything queued before it was exported or failed."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = native.allocate_lock()
        self.done.acquire()

    def settle(self) -> None:
        self.done.release()


class PipelineOwner:
    """What the distro's span and log record processors share: their pipeline, its counters, shutdown."""

    _pipeline: BatchPipeline

    @property
    def pipeline(self) -> BatchPipeline:
        """The queue and export thread behind this processor."""
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

    def shutdown(self, timeout_millis: float | None = None) -> None:
        self._pipeline.shutdown(timeout_millis)


class BatchPipeline:
    """Queue, batch and export items of one signal; shared by the span and log record processors.

    Counters, of this process only: ``exported``; ``failed`` (the exporter
    said no or raised: refused); ``dropped`` (queue full); ``lost_at_exit``
    (still queued or in flight when shutdown's time ran out);
    ``dropped_after_shutdown``; ``reentrant`` (made on the export thread, not queued).
    """

    def __init__(self, exporter: Exporter, options: BatchOptions, what: str, metrics: Any = None) -> None:
        self.exporter = exporter
        #: The SDK's processor metrics (:mod:`otel_gevent_distro.pipeline.processor_metrics`), or None.
        self._metrics = metrics
        if metrics is not None:
            metrics.register_queue_size(lambda: len(self._queue))
        self.options = options
        self._what = what
        self._max_queue_size = options.max_queue_size
        self._batch_size = options.max_export_batch_size
        self._timeout_s = options.export_timeout_millis / 1000
        self._delay_s = options.schedule_delay_millis / 1000
        self._closed = False
        self._reset_after_fork()
        self.worker = ExportThread(f"{what}-export", self._work, self._wait_s, prepare_export_thread(exporter))
        forksafe.register_reset(self._reset_after_fork)
        forksafe.register_exit_flush(self._flush_before_exit)
        exit_budget.register(self)
        after_server_fork(self.worker.ensure_started)

    def _reset_after_fork(self) -> None:
        # Items queued or in flight before the fork stay the parent's to export.
        self._queue: collections.deque[Any] = collections.deque()
        self._lock = native.allocate_lock()
        self._wake_pending = False
        self._oldest: float | None = None
        self._markers = 0
        self._in_flight = 0
        self._exit_deadline: float | None = None
        self._shutdown_started = False
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self.lost_at_exit = 0
        self.dropped_after_shutdown = 0
        self.reentrant = 0
        self._drops = DropReporter(self._what, self._max_queue_size)
        self._errors = RateLimiter(ERROR_LOG_INTERVAL_S)

    # -- emit path -------------------------------------------------------

    def emit(self, item: Any) -> None:
        """Queue one item; never blocks, never switches greenlets, never raises."""
        if self._closed:
            self._count("dropped_after_shutdown")
            if self._metrics is not None:
                self._metrics.drop_items(1, "already_shutdown")
            return
        queue = self._queue
        size = len(queue)
        if size >= self._max_queue_size:
            self._count("dropped")
            if self._metrics is not None:
                self._metrics.drop_items(1)
            return
        if self.worker.on_this_thread():
            self._count("reentrant")
            return
        queue.append(item)
        if size == 0:
            self.worker.wake()  # starts the schedule delay's clock
        elif size + 1 >= self._batch_size and not self._wake_pending:
            self._wake_pending = True
            self.worker.wake()

    def _count(self, counter: str) -> None:
        # Emitters may be several OS threads: += is not atomic across them.
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    # -- the export thread ------------------------------------------------

    def _wait_s(self) -> float:
        if not self._queue:
            self._oldest = None
            return float("inf")
        now = time.monotonic()
        if self._oldest is None:
            self._oldest = now
        return self._oldest + self._delay_s - now

    def _work(self, deadline: float | None = None) -> None:
        """One round: full batches now; everything once due, flushing or exiting.

        ``deadline`` (else the exit's, once exiting) bounds the round and every export in it.
        """
        self._wake_pending = False
        if deadline is None:
            deadline = self._exit_deadline
        queue = self._queue
        owed = 0
        now = time.monotonic()
        due = self._oldest is not None and now >= self._oldest + self._delay_s
        if due or self._markers or deadline is not None:
            owed = len(queue)
            self._oldest = None
        while queue and (owed > 0 or len(queue) >= self._batch_size):
            if deadline is not None and time.monotonic() >= deadline:
                break  # what is left is counted as queued by shutdown
            batch, markers = self._take()
            owed -= len(batch) + len(markers)
            if batch:
                self._export(batch, deadline)
            for marker in markers:
                marker.settle()
        self._drops.report_if_due(self.dropped)

    def _take(self) -> tuple[list[Any], list[_Marker]]:
        """Up to one batch of items, ending early at a flush marker (returned to settle after the export)."""
        queue = self._queue
        batch: list[Any] = []
        markers: list[_Marker] = []
        while queue and len(batch) < self._batch_size:
            item = queue.popleft()
            if type(item) is _Marker:
                markers.append(item)
                with self._lock:
                    self._markers -= 1
                break
            batch.append(item)
        return batch, markers

    def _export(self, batch: list[Any], deadline: float | None) -> None:
        self._in_flight = len(batch)
        if self._metrics is not None:
            self._metrics.finish_items(len(batch))  # on submission to the exporter, as the SDK counts
        if deadline is None:
            deadline = time.monotonic() + self._timeout_s
        try:
            ok = export_until(self.exporter, batch, deadline)
        except Exception:  # noqa: BLE001 - an exporter bug must not stop the thread
            ok = False
            if self._errors.take():
                logger.warning("%sexporting %d %s raised.", PREFIX, len(batch), self._what, exc_info=True)
        finally:
            self._in_flight = 0
        if ok:
            self.exported += len(batch)
        else:
            self.failed += len(batch)

    # -- flush, exit and shutdown ------------------------------------------

    def _deadline(self, timeout_millis: float | None) -> float:
        timeout_s = self._timeout_s
        if timeout_millis is not None:
            timeout_s = min(timeout_s, max(0.0, timeout_millis / 1000))
        return exit_budget.bound(time.monotonic() + timeout_s)

    def flush(self, timeout_millis: float | None = None) -> bool:
        """Export everything queued before this call, within the export timeout (or ``timeout_millis``)."""
        if self._closed or self.worker.on_this_thread():
            return False
        deadline = self._deadline(timeout_millis)
        marker = _Marker()
        with self._lock:
            self._markers += 1
        self._queue.append(marker)
        if self.worker.ensure_started():
            self.worker.wake()
        else:  # no thread here (a uWSGI master, a process out of threads): on the caller
            self._work(deadline)
        return wait_released(marker.done, deadline)

    def begin_exit(self, deadline: float) -> None:
        """The process is exiting: export everything now, on the thread, within ``deadline``."""
        self._exit_deadline = deadline
        self.worker.wake()

    def _flush_before_exit(self) -> None:
        # A multiprocessing child leaves through os._exit: no atexit, so the budget starts here.
        if not self._closed:
            exit_budget.begin()
            self.shutdown()

    def shutdown(self, timeout_millis: float | None = None) -> None:
        """Export what is left within the timeout and the exit budget, report losses, shut the exporter down.

        Once per process: other calls, concurrent or later, return at once.
        """
        with self._lock:
            if self._shutdown_started:
                return
            self._shutdown_started = True
        deadline = self._deadline(timeout_millis)
        self._closed = True
        self._exit_deadline = deadline
        interrupted = False
        if self.worker.running:
            self.worker.stop()
            ended = self.worker.wait_ended(interrupt_at(deadline))
            if not ended:
                # Still exporting: shutting the exporter down cuts its retries short,
                # so the thread is out of the exporter before the process goes on.
                interrupted = True
                shutdown_exporter(self.exporter, 0)
                ended = self.worker.wait_ended(deadline)
        else:
            self._work(deadline)
            ended = True
        self._report_losses(ended)
        if not interrupted:
            shutdown_exporter(self.exporter, max(0.0, deadline - time.monotonic()) * 1000)

    def _report_losses(self, ended: bool) -> None:
        queued = sum(1 for item in self._queue if type(item) is not _Marker)
        in_flight = 0 if ended else self._in_flight
        self.lost_at_exit = queued + in_flight
        for item in list(self._queue):
            if type(item) is _Marker:
                item.settle()
        self._queue.clear()
        lost = self.lost_at_exit + self.failed + self.dropped
        if lost:
            logger.warning(
                "%s%d %s of this process were not delivered: %d still queued and %d in flight when "
                "the time ran out (export timeout %g ms, exit budget %g ms), %d refused or failed, "
                "%d dropped because the queue was full.",
                PREFIX,
                lost,
                self._what,
                queued,
                in_flight,
                self.options.export_timeout_millis,
                exit_budget.budget_s() * 1000,
                self.failed,
                self.dropped,
            )
