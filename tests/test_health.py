"""gevent's health as telemetry: loop blocking, loop lag and live greenlets.

A greenlet that blocks the hub shows up as a ``gevent.loop.block.duration``
point and a ``gevent.loop.blocked`` log record whose stack names the
blocking function; lag and greenlet count are reported; the off switch turns
everything off; a forked child reports its own blocks.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import gevent
import pytest

from otel_gevent_distro.health import start_health_monitoring
from otel_gevent_distro.health.loop_blocking import BLOCKED_EVENT, Block, BlockReporter, blocked_stack, greenlet_name
from otel_gevent_distro.health.monitor import BLOCK_DURATION, GREENLET_COUNT, LOOP_LAG
from otel_gevent_distro.runtime.gevent_state import is_patched
from otel_gevent_distro.settings import Settings, load_settings
from tests.launch import run_app, write_app

#: Older gevent (24.2.1) always prints its blocking reports to stderr once the monitor thread runs.
GEVENT_CAN_STAY_QUIET = "print_blocking_reports" in gevent.config.settings
QUIET_MISSING = "gevent without the print_blocking_reports setting (24.10.3 and older)"

# A patched process with in-memory SDK pipelines; prints what they received as JSON.
IN_MEMORY_APP = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import json, os, sys, time
    import gevent
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import Histogram, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from otel_gevent_distro.health import start_health_monitoring
    from otel_gevent_distro.settings import load_settings

    gevent.config.max_blocking_time = 0.1
    # Delta histograms, so that a forked child sees only its own blocks.
    reader = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    tracer = TracerProvider().get_tracer("app")
    real_sleep = gevent.monkey.get_original("time", "sleep")

    monitor = start_health_monitoring(
        load_settings(), meter_provider=MeterProvider(metric_readers=[reader]), logger_provider=logger_provider
    )
    again = start_health_monitoring(load_settings())

    def block_the_hub():
        with tracer.start_as_current_span("blocking-request") as span:
            real_sleep(0.3)
            gevent.sleep(0)  # yield while still in the span
            return format(span.get_span_context().trace_id, "032x")

    def block_a_worker_thread():
        gevent.sleep(0.01)  # gives this thread-pool thread a hub, and gevent a monitor for it
        real_sleep(0.3)  # blocks that hub: not the application's loop, not reported

    def collect():
        metrics = {}
        data = reader.get_metrics_data()  # None when no instrument exists
        for resource_metrics in data.resource_metrics if data else []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    points = metric.data.data_points
                    metrics[metric.name] = {
                        "unit": metric.unit,
                        "scope": scope_metrics.scope.name,
                        "values": [getattr(p, "value", None) for p in points],
                        "counts": [getattr(p, "count", None) for p in points],
                        "max": [getattr(p, "max", None) for p in points],
                    }
        logs = [
            {
                "event_name": r.log_record.event_name,
                "body": r.log_record.body,
                "severity": r.log_record.severity_text,
                "trace_id": format(r.log_record.trace_id or 0, "032x"),
                "attributes": dict(r.log_record.attributes),
            }
            for r in log_exporter.get_finished_logs()
        ]
        return metrics, logs

    sleepers = [gevent.spawn(gevent.sleep, 30) for _ in range(5)]
    trace_id = gevent.spawn(block_the_hub).get()
    gevent.get_hub().threadpool.spawn(block_a_worker_thread).get()
    gevent.sleep(0.3)  # several lag samples
    if "fork" in sys.argv:
        pid = os.fork()
        if pid == 0:
            log_exporter.clear()
            reader.get_metrics_data()  # drop the parent's points
            gevent.sleep(0.2)  # a worker starting up; monitoring catches up lazily in the child
            child_trace = gevent.spawn(block_the_hub).get()
            gevent.sleep(0.3)
            metrics, logs = collect()
            monitor_thread = gevent.get_hub().periodic_monitoring_thread
            print(json.dumps({
                "role": "child", "metrics": metrics, "logs": logs, "trace_id": child_trace,
                "monitor_thread_pid_is_mine": monitor_thread is not None and monitor_thread.pid == os.getpid(),
            }), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
    metrics, logs = collect()
    for sleeper in sleepers:
        sleeper.kill()
    started = time.perf_counter()
    loop_finished = gevent.wait(timeout=10)  # True: nothing of the monitor kept the loop alive
    print(json.dumps({
        "role": "parent",
        "started": monitor is not None,
        "idempotent": again is monitor,
        "monitor_thread": gevent.config.monitor_thread,
        "loop_finished": loop_finished,
        "wait_seconds": time.perf_counter() - started,
        "trace_id": trace_id,
        "metrics": metrics,
        "logs": logs,
    }))
"""


def _run_in_memory(
    tmp_path: Path, env: dict[str, str] | None = None, args: list[str] | None = None
) -> list[dict[str, Any]]:
    app = write_app(tmp_path, IN_MEMORY_APP)
    result = run_app(app, "plain", env={"OTEL_PYTHON_GEVENT_HEALTH_INTERVAL": "0.05", **(env or {})}, args=args)
    result.assert_clean()
    if GEVENT_CAN_STAY_QUIET:
        assert "appears to be blocked" not in result.stderr, "gevent printed its report although the distro reports it"
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _check_block_reported(seen: dict[str, Any]) -> None:
    block = seen["metrics"][BLOCK_DURATION]
    assert block["unit"] == "s"
    assert block["scope"] == "otel_gevent_distro.health"
    assert block["counts"] == [1]  # the main loop's block only, not the thread-pool thread's
    # Blocked 0.3 s, measured from the loop's own clock (not to within max_blocking_time):
    # a real sleep never ends early, so the lower bound holds on any machine; the
    # upper one only rules out nonsense (a busy machine stretches the block).
    assert 0.29 <= block["max"][0] < 10

    (record,) = [log for log in seen["logs"] if log["event_name"] == BLOCKED_EVENT]
    assert record["severity"] == "WARN"
    assert "blocked for" in record["body"]
    assert "in block_the_hub" in record["attributes"]["code.stacktrace"]
    assert "real_sleep(0.3)" in record["attributes"]["code.stacktrace"]
    assert record["attributes"]["gevent.greenlet.name"].startswith("Greenlet-")
    assert record["attributes"]["gevent.loop.block.duration"] == pytest.approx(block["max"][0])
    # The record joins the trace the blocking greenlet was in.
    assert record["trace_id"] == seen["trace_id"]


def test_blocking_greenlet_gives_a_duration_point_and_a_log_with_its_stack(tmp_path: Path) -> None:
    (seen,) = _run_in_memory(tmp_path)
    assert seen["started"] is True
    assert seen["idempotent"] is True
    _check_block_reported(seen)


def test_lag_and_greenlet_count_are_reported(tmp_path: Path) -> None:
    (seen,) = _run_in_memory(tmp_path)
    lag = seen["metrics"][LOOP_LAG]
    assert lag["unit"] == "s"
    assert lag["counts"][0] >= 3
    # The probe was late by about the whole block once.
    assert lag["max"][0] >= 0.1
    count = seen["metrics"][GREENLET_COUNT]
    assert count["unit"] == "{greenlet}"
    assert count["values"] == [5]  # the five sleepers; the finished blocker is not counted


def test_monitoring_does_not_keep_the_loop_alive(tmp_path: Path) -> None:
    (seen,) = _run_in_memory(tmp_path)
    assert seen["loop_finished"] is True  # gevent.wait returned because the loop ran out, not at its timeout
    assert seen["wait_seconds"] < 9  # sanity: well before that timeout


def test_off_switch_turns_everything_off(tmp_path: Path) -> None:
    (seen,) = _run_in_memory(tmp_path, env={"OTEL_PYTHON_GEVENT_HEALTH": "false"})
    assert seen["started"] is False
    assert seen["monitor_thread"] is False  # gevent's monitor thread was not turned on
    assert not [name for name in seen["metrics"] if name.startswith("gevent.")]
    assert seen["logs"] == []


def test_forked_child_reports_its_own_blocks(tmp_path: Path) -> None:
    child, parent = _run_in_memory(tmp_path, args=["fork"])
    assert child["role"] == "child"
    assert parent["role"] == "parent"
    assert child["monitor_thread_pid_is_mine"] is True
    _check_block_reported(child)
    _check_block_reported(parent)


def test_not_patched_is_a_no_op_with_a_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    if is_patched():
        pytest.skip("this test process is monkey-patched")
    with caplog.at_level(logging.DEBUG, logger="otel_gevent_distro"):
        assert start_health_monitoring(Settings()) is None
    assert "gevent has not patched this process" in caplog.text


def test_off_switch_is_a_no_op_with_a_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="otel_gevent_distro"):
        assert start_health_monitoring(Settings(health=False)) is None
    assert "OTEL_PYTHON_GEVENT_HEALTH=false" in caplog.text


def test_options_and_defaults(caplog: pytest.LogCaptureFixture) -> None:
    assert (load_settings({}).health, load_settings({}).health_interval) == (True, 1.0)
    settings = load_settings({"OTEL_PYTHON_GEVENT_HEALTH": "False", "OTEL_PYTHON_GEVENT_HEALTH_INTERVAL": "0.25"})
    assert (settings.health, settings.health_interval) == (False, 0.25)
    with caplog.at_level(logging.WARNING, logger="otel_gevent_distro"):
        assert load_settings({"OTEL_PYTHON_GEVENT_HEALTH_INTERVAL": "0"}).health_interval == 1.0
    assert "OTEL_PYTHON_GEVENT_HEALTH_INTERVAL='0' is not valid" in caplog.text


# -- the reporter's own rules ---------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.records: list[Any] = []

    def record(self, value: float) -> None:
        self.values.append(value)

    def emit(self, record: Any) -> None:
        self.records.append(record)


def _block(name: str = "Greenlet-1") -> Block:
    return Block(started=0.0, greenlet_name=name, greenlet=lambda: None, stack='  File "app.py", line 1, in f\n')


def test_log_records_are_rate_limited_but_every_block_is_measured() -> None:
    recorder = _Recorder()
    reporter = BlockReporter(hub=None, histogram=recorder, otel_logger=recorder, report_interval=60)
    for duration in (0.2, 0.3, 0.4):
        reporter._report(_block(), duration)
    assert recorder.values == [0.2, 0.3, 0.4]
    assert len(recorder.records) == 1
    assert recorder.records[0].attributes["gevent.loop.block.suppressed"] == 0

    reporter._last_report = -1e9  # the interval has passed
    reporter._report(_block(), 0.5)
    assert len(recorder.records) == 2
    assert recorder.records[1].attributes["gevent.loop.block.suppressed"] == 2


def test_stack_and_name_come_from_gevents_report() -> None:
    report = [
        "=" * 80,
        "\n... : Greenlet x appears to be blocked",
        "    Reported by y",
        "Blocked Stack (for thread id 0x1):",
    ]
    report += ['  File "app.py", line 3, in block_the_hub\n    real_sleep(0.3)\n', "Info:", "more"]
    assert blocked_stack(report) == report[4]
    assert blocked_stack(["odd", "report"]) == "odd\nreport"

    class Named:
        name = "Greenlet-7"

    class Main:
        parent = None

    assert greenlet_name(Named()) == "Greenlet-7"
    assert greenlet_name(Main()) == "main"
    assert greenlet_name(object()) == "object"


# -- gevent's report is built once per block -------------------------------------

LONG_BLOCK_APP = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import json
    import gevent
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from otel_gevent_distro.health import start_health_monitoring
    from otel_gevent_distro.settings import load_settings

    gevent.config.max_blocking_time = 0.05
    reader = InMemoryMetricReader()
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    start_health_monitoring(
        load_settings(), meter_provider=MeterProvider(metric_readers=[reader]), logger_provider=logger_provider
    )
    real_sleep = gevent.monkey.get_original("time", "sleep")

    def block_the_hub():
        real_sleep(1.0)  # about twenty of gevent's periods

    gevent.spawn(block_the_hub).join()
    gevent.sleep(0.3)
    (entry,) = [
        e for e in gevent.get_hub().periodic_monitoring_thread.monitoring_functions() if hasattr(e.function, "skipped")
    ]
    counts = [
        point.count
        for resource_metrics in reader.get_metrics_data().resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
        if metric.name == "gevent.loop.block.duration"
        for point in metric.data.data_points
    ]
    stacks = [r.log_record.attributes["code.stacktrace"] for r in log_exporter.get_finished_logs()]
    check = entry.function
    print(json.dumps({"noted": check.noted, "skipped": check.skipped, "counts": counts, "stacks": stacks}))
"""


@pytest.mark.applies_when(GEVENT_CAN_STAY_QUIET, reason=f"{QUIET_MISSING} prints a report per period")
def test_a_long_block_is_reported_once_without_a_report_per_period(tmp_path: Path) -> None:
    # gevent's report lists every greenlet and thread with its stack, holding the
    # GIL the blocked hub needs: built for each period, it slows a saturated server.
    app = write_app(tmp_path, LONG_BLOCK_APP)
    result = run_app(app, "plain")
    result.assert_clean()
    (seen,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert seen["noted"] == 1
    assert seen["skipped"] >= 5  # the other periods of the block built nothing
    assert seen["counts"] == [1]
    (stack,) = seen["stacks"]
    assert "in block_the_hub" in stack


class _FakeTracer:
    def __init__(self) -> None:
        self.blocked: Any = False
        self.calls = 0

    def did_block_hub(self, hub: Any) -> Any:
        self.calls += 1
        return self.blocked


class _FakeEntry:
    def __init__(self, function: Any) -> None:
        self.function = function


class _FakeMonitor:
    def __init__(self) -> None:
        self.checked: list[Any] = []
        self._greenlet_tracer = _FakeTracer()
        self.entries = [_FakeEntry(self.monitor_blocking)]

    def monitor_blocking(self, hub: Any) -> None:
        self.checked.append(hub)

    def monitoring_functions(self) -> list[_FakeEntry]:
        return self.entries


class _FakeLoop:
    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def now(self) -> float:
        return 0.0

    def run_callback_threadsafe(self, function: Any, *args: Any) -> None:
        self.callbacks.append((function, args))


class _FakeHub:
    def __init__(self) -> None:
        self.periodic_monitoring_thread = _FakeMonitor()
        self.loop = _FakeLoop()
        self.thread_ident = threading.get_ident()


@pytest.mark.applies_when(GEVENT_CAN_STAY_QUIET, reason=f"{QUIET_MISSING} always prints its reports")
def test_the_reporter_alone_gets_each_block_once_without_gevents_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from gevent import events

    monkeypatch.setattr(gevent.config, "print_blocking_reports", False)
    monkeypatch.setattr(events, "subscribers", [])
    hub = _FakeHub()
    monitor = hub.periodic_monitoring_thread
    tracer = monitor._greenlet_tracer
    reporter = BlockReporter(hub=hub, histogram=_Recorder(), otel_logger=_Recorder())
    events.subscribers.append(reporter.on_event)
    reporter._subscribed = True
    reporter._wrap_gevent_check()
    reporter._wrap_gevent_check()  # a second start does not wrap twice
    check = monitor.entries[0].function
    assert check is not monitor.monitor_blocking

    check(hub)  # the hub switched: nothing to note
    assert (tracer.calls, reporter._pending) == (1, {})

    class Blocker:
        name = "Greenlet-3"

    blocker = Blocker()
    tracer.blocked = (True, blocker)
    check(hub)  # a new block: noted with this thread's stack, and the hub asked to call back
    (block,) = reporter._pending.values()
    assert block.greenlet_name == "Greenlet-3"
    assert "in test_the_reporter_alone_gets_each_block_once_without_gevents_report" in block.stack
    assert [function for function, _ in hub.loop.callbacks] == [reporter._block_ended]
    check(hub)  # the same block goes on
    assert (check.noted, check.skipped, len(hub.loop.callbacks)) == (1, 1, 1)
    assert monitor.checked == []  # gevent's own check never ran

    gevent.config.print_blocking_reports = True  # the user wants every period printed
    check(hub)
    assert monitor.checked == [hub]
    gevent.config.print_blocking_reports = False

    events.subscribers.append(lambda event: None)  # someone else hears of every period
    check(hub)
    assert monitor.checked == [hub, hub]
    events.subscribers.pop()

    reporter.stop()  # unsubscribed: gevent's own check again
    check(hub)
    assert monitor.checked == [hub, hub, hub]


# -- the user's way: opentelemetry-instrument, telemetry at a real receiver -----

RECEIVER_APP = """
    import gevent
    import gevent.monkey
    from opentelemetry import metrics
    from otel_gevent_distro.health import start_health_monitoring

    # The configurator starts monitoring once the SDK is built; calling it
    # again is harmless (it returns the same monitor), and makes this test
    # independent of how the configurator is wired.
    start_health_monitoring()
    metrics.get_meter("app").create_counter("app.heartbeat").add(1)

    real_sleep = gevent.monkey.get_original("time", "sleep")

    def block_the_hub():
        real_sleep(0.3)

    sleepers = [gevent.spawn(gevent.sleep, 30) for _ in range(3)]
    gevent.spawn(block_the_hub).join()
    gevent.sleep(1.5)  # at least two metric exports
    print("done")
"""


def _health_env(receiver: Any, **extra: str) -> dict[str, str]:
    return {**receiver.env("http/protobuf"), "OTEL_PYTHON_GEVENT_HEALTH_INTERVAL": "0.05", **extra}


def test_health_telemetry_arrives_at_the_receiver(tmp_path: Path, receiver: Any) -> None:
    app = write_app(tmp_path, RECEIVER_APP)
    result = run_app(app, "instrument", env=_health_env(receiver))
    result.assert_clean()
    assert result.stdout.strip() == "done"
    receiver.wait_for(lambda m: m.name == BLOCK_DURATION, signal="metrics", timeout=30)
    receiver.wait_for(lambda m: m.name == LOOP_LAG, signal="metrics", timeout=30)
    receiver.wait_for(lambda m: m.name == GREENLET_COUNT, signal="metrics", timeout=30)
    block_points = receiver.metric_points(BLOCK_DURATION)
    assert max(point["count"] for point in block_points) >= 1
    assert max(point["max"] for point in block_points) >= 0.29
    assert max(point["value"] for point in receiver.metric_points(GREENLET_COUNT)) >= 3
    (record,) = receiver.wait_for(lambda log: log.event_name == BLOCKED_EVENT, signal="logs", timeout=30)
    assert "in block_the_hub" in record.attributes["code.stacktrace"]


def test_off_switch_sends_no_health_telemetry(tmp_path: Path, receiver: Any) -> None:
    app = write_app(tmp_path, RECEIVER_APP)
    result = run_app(app, "instrument", env=_health_env(receiver, OTEL_PYTHON_GEVENT_HEALTH="false"))
    result.assert_clean()
    receiver.wait_for(lambda m: m.name == "app.heartbeat", signal="metrics", timeout=30)
    assert not [m.name for m in receiver.metrics() if m.name.startswith("gevent.")]
    assert not [log for log in receiver.logs() if log.event_name == BLOCKED_EVENT]


# -- the exit: waiting for the export threads is not a block --------------------

EXIT_APP = """
    from opentelemetry import trace

    tracer = trace.get_tracer("exiting-app")
    for _ in range(50):
        with tracer.start_as_current_span("left-for-the-exit"):
            pass
    print("done")
"""


def test_the_exit_wait_is_not_reported_as_a_block(tmp_path: Path, blackhole: Any) -> None:
    # The collector accepts and never answers: the shutdown holds the hub's
    # thread for the whole exit budget (1 s), ten times gevent's blocking
    # threshold. gevent is asked to print its reports, so a block seen at exit
    # would show in stderr on every gevent version.
    env = {
        **blackhole.env("http/protobuf"),
        "OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "1000",
        "GEVENT_MAX_BLOCKING_TIME": "0.1",
    }
    if GEVENT_CAN_STAY_QUIET:
        env["GEVENT_MONITOR_PRINT_BLOCKING_REPORTS"] = "true"
    result = run_app(write_app(tmp_path, EXIT_APP), "instrument", env=env)
    result.assert_clean(loss_expected=True)  # the spans are lost on purpose
    assert result.stdout.strip() == "done"
    assert blackhole.accepted >= 1
    assert "appears to be blocked" not in result.stderr
    assert any("were not delivered" in line for line in result.warnings()), result.stderr


IDLE_EXPORT_THREAD_APP = """
    import gevent
    from opentelemetry import trace

    with trace.get_tracer("idle-app").start_as_current_span("one"):
        pass
    trace.get_tracer_provider().force_flush()
    gevent.sleep(1.5)  # fifteen of gevent's monitor periods with the export thread waiting
    print("done")
"""


def test_an_export_thread_waiting_is_not_a_blocked_hub(tmp_path: Path) -> None:
    # The console exporter writes through gevent's patched stdout, so the
    # export thread gets a gevent hub of its own, and gevent a monitor for it.
    # That thread waits for work on purpose: its monitor must not report it
    # (ten reports a second, each formatting every greenlet of the process).
    env = {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "GEVENT_MAX_BLOCKING_TIME": "0.1",
    }
    if GEVENT_CAN_STAY_QUIET:
        env["GEVENT_MONITOR_PRINT_BLOCKING_REPORTS"] = "true"
    result = run_app(write_app(tmp_path, IDLE_EXPORT_THREAD_APP), "instrument", env=env)
    result.assert_clean()
    assert result.stdout.strip().endswith("done")
    assert '"name": "one"' in result.stdout
    assert "appears to be blocked" not in result.stderr
