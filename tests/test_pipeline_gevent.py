"""The greenlet worker inside monkey-patched programs, with exporters that need no collector.

Each test writes a small program that patches gevent on its first line, sets
the SDK up in code with the distro's classes, and prints what it saw as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.launch import run_app, write_app

PRELUDE = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import json, os, sys, time
    import gevent
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from otel_gevent_distro.pipeline import BatchPipeline
    from otel_gevent_distro.pipeline_options import BatchOptions


    class Recorder(SpanExporter):
        def __init__(self, cost_s=0.0):
            self.items, self.calls, self.cost_s = [], [], cost_s

        def export(self, batch):
            end = time.thread_time() + self.cost_s * len(batch)
            while time.thread_time() < end:  # CPU work, like protobuf encoding
                pass
            self.items.extend(batch)
            self.calls.append(len(batch))
            return SpanExportResult.SUCCESS


    def wait_until(check, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not check():
            gevent.sleep(0.01)
        return check()
"""


def run_program(tmp_path: Path, body: str) -> dict:
    app = write_app(tmp_path, PRELUDE + body)
    result = run_app(app, "plain", timeout=60)
    result.assert_clean()
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_worker_is_a_greenlet_woken_from_real_threads(tmp_path: Path) -> None:
    seen = run_program(
        tmp_path,
        """
    hub = gevent.get_hub()
    first = Recorder()
    one = BatchPipeline(first, BatchOptions(100, 60_000, 10, 2_000), "spans")
    one.emit(0)  # the first emit, on the main thread, starts the greenlet
    # Nine more from gevent's thread pool (real OS threads): the tenth fills a batch.
    hub.threadpool.spawn(lambda: [one.emit(i) for i in range(1, 10)]).get()
    woken = wait_until(lambda: len(first.items) == 10, timeout=5)

    # A pipeline whose very first item comes from a real thread: started on the main hub.
    second = Recorder()
    two = BatchPipeline(second, BatchOptions(100, 60_000, 5, 2_000), "spans")
    hub.threadpool.spawn(lambda: [two.emit(i) for i in range(5)]).get()
    started_from_thread = wait_until(lambda: len(second.items) == 5, timeout=5)
    print(json.dumps({
        "modes": [one.worker.mode, two.worker.mode],
        "woken": woken,
        "started_from_thread": started_from_thread,
        "items": first.items,
    }))
    """,
    )
    assert seen == {
        "modes": ["greenlet", "greenlet"],
        "woken": True,
        "started_from_thread": True,
        "items": list(range(10)),
    }


def test_idle_workers_do_not_keep_the_event_loop_alive(tmp_path: Path) -> None:
    seen = run_program(
        tmp_path,
        """
    pipe = BatchPipeline(Recorder(), BatchOptions(100, 60_000, 10, 2_000), "spans")
    pipe.emit(1)
    gevent.sleep(0.1)
    began = time.monotonic()
    finished = gevent.wait(timeout=30)  # True only when nothing referenced is left on the loop
    print(json.dumps({"mode": pipe.worker.mode, "finished": finished, "waited_s": time.monotonic() - began}))
    """,
    )
    assert seen["mode"] == "greenlet"
    assert seen["finished"] is True
    assert seen["waited_s"] < 25  # sanity: well before the timeout


def test_big_batches_are_exported_in_chunks_so_other_greenlets_keep_running(tmp_path: Path) -> None:
    # The exporter burns 0.2 ms of CPU per item: 512 items in one call would
    # freeze the hub for about 100 ms; chunked calls hold it a few ms each.
    seen = run_program(
        tmp_path,
        """
    exporter = Recorder(cost_s=0.0002)
    pipe = BatchPipeline(exporter, BatchOptions(100_000, 60_000, 512, 30_000), "spans")
    ticks = 0
    def ticker():
        global ticks
        while len(exporter.items) < 2048:
            gevent.sleep(0.001)
            ticks += 1
    for i in range(2048):
        pipe.emit(i)
    gevent.spawn(ticker).join()
    print(json.dumps({"ticks": ticks, "largest_call": max(exporter.calls), "items": len(exporter.items)}))
    """,
    )
    assert seen["items"] == 2048
    assert seen["largest_call"] <= 128, seen
    # About 400 ms of export CPU: unchunked that leaves a handful of ticks.
    assert seen["ticks"] >= 15, seen


def test_a_backed_up_queue_is_exported_in_whole_batches(tmp_path: Path) -> None:
    # Chunks cost a request each: when the queue backs up (a slow collector),
    # throughput wins over hub latency and whole batches go out, as with the SDK.
    seen = run_program(
        tmp_path,
        """
    exporter = Recorder(cost_s=0.00005)
    pipe = BatchPipeline(exporter, BatchOptions(2048, 60_000, 512, 30_000), "spans")
    for i in range(2048):
        pipe.emit(i)
    wait_until(lambda: len(exporter.items) == 2048)
    print(json.dumps({"calls": exporter.calls, "items": exporter.items == list(range(2048))}))
    """,
    )
    assert seen["items"] is True
    assert seen["calls"][0] == 512, seen
    assert len(seen["calls"]) < 2048 // 16, seen


def test_a_greenlet_that_never_waits_cannot_starve_the_export(tmp_path: Path) -> None:
    # A saturated server greenlet (say, keep-alive requests already buffered)
    # makes telemetry without ever waiting; the export needs the loop to run
    # (here a 1 ms wait per call, like a network round trip). Once the queue
    # is three quarters full the emitter lets the loop run, so nothing is dropped.
    seen = run_program(
        tmp_path,
        """
    class RoundTrip(Recorder):
        def export(self, batch):
            gevent.sleep(0.001)
            return super().export(batch)

    exporter = RoundTrip()
    pipe = BatchPipeline(exporter, BatchOptions(400, 60_000, 100, 30_000), "spans")
    for i in range(4000):
        end = time.thread_time() + 0.0001
        while time.thread_time() < end:  # request work that never waits
            pass
        pipe.emit(i)
    wait_until(lambda: len(exporter.items) == 4000, timeout=20)
    print(json.dumps({"dropped": pipe.dropped, "exported": len(exporter.items)}))
    """,
    )
    assert seen == {"dropped": 0, "exported": 4000}


FORK_PROGRAM = """
    import multiprocessing
    from opentelemetry.sdk.trace import TracerProvider
    from otel_gevent_distro import GeventBatchSpanProcessor

    OUT = sys.argv[1]


    class FileExporter(SpanExporter):
        # One line per exported span: the exporting process's pid and the span name.
        def export(self, batch):
            with open(OUT, "a") as out:
                for span in batch:
                    out.write(f"{os.getpid()} {span.name}\\n")
            return SpanExportResult.SUCCESS


    provider = TracerProvider()
    provider.add_span_processor(GeventBatchSpanProcessor(FileExporter(), schedule_delay_millis=60_000))
    tracer = provider.get_tracer("fork")


    def spans(prefix, count):
        for i in range(count):
            with tracer.start_as_current_span(f"{prefix}-{i}"):
                pass


    def mp_child():
        spans("mp-child", 4)


    spans("parent-before", 3)  # still queued at fork time: the parent's to export
    pid = os.fork()
    if pid == 0:
        spans("fork-child", 2)
        sys.exit(0)
    os.waitpid(pid, 0)
    child = multiprocessing.get_context("fork").Process(target=mp_child)
    child.start()
    child.join()
    spans("parent-after", 1)
    print(json.dumps({"parent": os.getpid(), "fork_child": pid, "mp_child": child.pid, "mp_exitcode": child.exitcode}))
"""


def test_each_process_exports_its_own_spans_exactly_once(tmp_path: Path) -> None:
    out = tmp_path / "exported.txt"
    app = write_app(tmp_path, PRELUDE + FORK_PROGRAM)
    result = run_app(app, "plain", args=[str(out)], timeout=60)
    result.assert_clean()
    pids = json.loads(result.stdout.strip().splitlines()[-1])
    assert pids["mp_exitcode"] == 0
    by_process: dict[str, list[str]] = {}
    for line in out.read_text().splitlines():
        pid, name = line.split()
        by_process.setdefault(pid, []).append(name)
    assert sorted(by_process[str(pids["parent"])]) == [
        "parent-after-0",
        "parent-before-0",
        "parent-before-1",
        "parent-before-2",
    ]
    assert sorted(by_process[str(pids["fork_child"])]) == ["fork-child-0", "fork-child-1"]
    assert sorted(by_process[str(pids["mp_child"])]) == [f"mp-child-{i}" for i in range(4)]
    assert len(by_process) == 3


def test_exports_at_exit_wait_for_an_idle_pool_thread(tmp_path: Path) -> None:
    # Python 3.12 cannot start a thread at exit, and gevent's pool starts one
    # whenever its unfinished tasks outnumber its threads. gRPC's gevent mode
    # waits for each call in that pool, like this exporter.
    seen = run_program(
        tmp_path,
        """
    import atexit
    from gevent.monkey import get_original

    real_sleep = get_original("time", "sleep")
    pool = gevent.get_hub().threadpool


    class PoolExporter(Recorder):
        def export(self, batch):
            pool.apply(int)
            return super().export(batch)


    exporter = PoolExporter()
    pipeline = BatchPipeline(exporter, BatchOptions(100, 60_000, 10, 5_000), "spans")
    pipeline.emit(0)  # starts the worker, which readies the pool's threads
    gevent.sleep(0.05)
    ready = pool.size
    for _ in range(pool.size):
        pool.spawn(real_sleep, 0.3)  # every thread busy when the program ends
    pipeline.emit(1)


    def at_exit():
        pipeline.shutdown()
        print(json.dumps({"ready": ready, "exported": exporter.items, "failed": pipeline.failed}))


    atexit.register(at_exit)
    """,
    )
    assert seen == {"ready": 4, "exported": [0, 1], "failed": 0}
