"""The export thread inside monkey-patched programs, with exporters that need no collector.

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
    from otel_gevent_distro.pipeline.batch import BatchPipeline
    from otel_gevent_distro.pipeline.options import BatchOptions


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


def test_exports_run_on_a_native_thread_woken_from_greenlets_and_real_threads(tmp_path: Path) -> None:
    seen = run_program(
        tmp_path,
        """
    from gevent.monkey import get_original

    os_thread = get_original("_thread", "get_ident")  # the OS thread, not the greenlet

    class WhereRecorder(Recorder):
        def export(self, batch):
            self.thread = os_thread()
            return super().export(batch)

    hub = gevent.get_hub()
    first = WhereRecorder()
    one = BatchPipeline(first, BatchOptions(100, 60_000, 10, 2_000), "spans")
    one.emit(0)
    # Nine more from gevent's thread pool (real OS threads): the tenth fills a batch.
    hub.threadpool.spawn(lambda: [one.emit(i) for i in range(1, 10)]).get()
    woken = wait_until(lambda: len(first.items) == 10, timeout=5)
    print(json.dumps({
        "woken": woken,
        "items": first.items,
        "native_thread": first.thread not in (os_thread(), None),
        "running": one.worker.running,
    }))
    """,
    )
    assert seen == {"woken": True, "items": list(range(10)), "native_thread": True, "running": True}


def test_idle_export_threads_do_not_keep_the_event_loop_alive(tmp_path: Path) -> None:
    seen = run_program(
        tmp_path,
        """
    pipe = BatchPipeline(Recorder(), BatchOptions(100, 60_000, 10, 2_000), "spans")
    pipe.emit(1)
    gevent.sleep(0.1)
    began = time.monotonic()
    finished = gevent.wait(timeout=30)  # True only when nothing referenced is left on the loop
    print(json.dumps({"running": pipe.worker.running, "finished": finished, "waited_s": time.monotonic() - began}))
    """,
    )
    assert seen["running"] is True
    assert seen["finished"] is True
    assert seen["waited_s"] < 25  # sanity: well before the timeout


def test_big_batches_go_out_whole_while_other_greenlets_keep_running(tmp_path: Path) -> None:
    # The exporter burns 0.2 ms of CPU per item on the export thread: 512 items
    # per call. The hub's thread takes the GIL back at every switch interval.
    seen = run_program(
        tmp_path,
        """
    class Timed(Recorder):
        def export(self, batch):
            began = time.monotonic()
            try:
                return super().export(batch)
            finally:
                self.durations.append(time.monotonic() - began)

    exporter = Timed(cost_s=0.0002)
    exporter.durations = []
    pipe = BatchPipeline(exporter, BatchOptions(100_000, 60_000, 512, 30_000), "spans")
    gaps = []
    def ticker():
        last = time.monotonic()
        while len(exporter.items) < 2048:
            gevent.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    for i in range(2048):
        pipe.emit(i)
    gevent.spawn(ticker).join()
    print(json.dumps({
        "longest_gap_s": max(gaps),
        "shortest_call_s": min(exporter.durations),
        "calls": exporter.calls,
        "items": exporter.items == list(range(2048)),
    }))
    """,
    )
    assert seen["items"] is True
    assert seen["calls"] == [512, 512, 512, 512], seen
    # About 100 ms of export CPU per call: a hub held for a whole call would
    # show a gap at least that long (a loaded machine stretches both alike);
    # the export thread gives the GIL back every switch interval (5 ms).
    assert seen["longest_gap_s"] < seen["shortest_call_s"] / 2, seen


def test_a_greenlet_that_never_waits_cannot_starve_the_export(tmp_path: Path) -> None:
    # A saturated server greenlet (say, keep-alive requests already buffered)
    # makes telemetry without ever waiting; each export takes a 1 ms round
    # trip. A greenlet worker would export nothing until the loop ends (the hub
    # never runs); the export thread exports meanwhile, and nothing is lost.
    # (How far it keeps up depends on the machine's load: the queue holds it all.)
    seen = run_program(
        tmp_path,
        """
    from gevent.monkey import get_original

    real_sleep = get_original("time", "sleep")

    class RoundTrip(Recorder):
        def export(self, batch):
            real_sleep(0.001)
            return super().export(batch)

    exporter = RoundTrip()
    pipe = BatchPipeline(exporter, BatchOptions(4000, 60_000, 100, 30_000), "spans")
    for i in range(4000):
        end = time.thread_time() + 0.0001
        while time.thread_time() < end:  # request work that never waits
            pass
        pipe.emit(i)
    during = len(exporter.items)
    flushed = pipe.flush()
    print(json.dumps({"during": during, "flushed": flushed, "dropped": pipe.dropped, "items": exporter.items}))
    """,
    )
    assert seen["during"] > 0, "nothing was exported while the greenlet never waited"
    assert (seen["flushed"], seen["dropped"]) == (True, 0)
    assert seen["items"] == list(range(4000))


def test_the_emit_path_never_switches_greenlets_nor_raises(tmp_path: Path) -> None:
    # Collector that never answers: the queue fills, then overflows. CPU-only
    # code making spans under a gevent.Timeout, one busy greenlet beside it:
    # no switch may happen inside emit, and the Timeout never comes out of it.
    seen = run_program(
        tmp_path,
        """
    import greenlet
    from gevent.monkey import get_original

    real_sleep = get_original("time", "sleep")

    class NeverAnswers(Recorder):
        def export(self, batch):
            real_sleep(5)
            return super().export(batch)

    pipe = BatchPipeline(NeverAnswers(), BatchOptions(2048, 200, 512, 1_000), "spans")
    inside = [False]
    switches = [0]

    def tracer(event, args):
        if inside[0] and event in ("switch", "throw"):
            switches[0] += 1

    def busy():
        while True:
            gevent.sleep(0)

    gevent.spawn(busy)
    greenlet.settrace(tracer)
    emitted = raised_inside = 0
    timeout = gevent.Timeout(0.5)
    timeout.start()
    try:
        while True:
            inside[0] = True
            try:
                pipe.emit(emitted)
            except BaseException:
                raised_inside += 1
                raise
            finally:
                inside[0] = False
            emitted += 1
            if emitted % 1000 == 0:
                gevent.sleep(0)  # the program's own switch point
    except gevent.Timeout:
        pass
    greenlet.settrace(None)
    print(json.dumps({"switches": switches[0], "raised_inside": raised_inside, "dropped": pipe.dropped > 0}))
    os._exit(0)
    """,
    )
    assert seen == {"switches": 0, "raised_inside": 0, "dropped": True}


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


def test_the_first_export_at_exit_needs_no_new_thread(tmp_path: Path) -> None:
    # Python 3.12 refuses to start a thread at exit: the export thread exists
    # already, and it uses no thread of gevent's pool.
    seen = run_program(
        tmp_path,
        """
    import atexit

    exporter = Recorder()
    pipeline = BatchPipeline(exporter, BatchOptions(100, 60_000, 10, 5_000), "spans")
    pipeline.emit(0)
    pipeline.emit(1)


    def at_exit():
        pipeline.shutdown()
        print(json.dumps({"exported": exporter.items, "failed": pipeline.failed}))


    atexit.register(at_exit)
    """,
    )
    assert seen == {"exported": [0, 1], "failed": 0}
