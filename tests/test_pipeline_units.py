"""The pipeline's queue, drop, flush and option logic, with in-memory exporters.

These run in the (unpatched) test process, so the worker is a real thread;
the greenlet worker is exercised by ``test_pipeline_gevent.py`` and the
launched applications of ``test_pipeline_apps.py``.
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry._logs import LogRecord, SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_gevent_distro import GeventBatchLogRecordProcessor, GeventBatchSpanProcessor, GeventPeriodicMetricReader
from otel_gevent_distro.pipeline.batch import BatchPipeline
from otel_gevent_distro.pipeline.options import (
    BatchOptions,
    MetricOptions,
    resolve_batch_options,
    resolve_metric_options,
)
from otel_gevent_distro.pipeline.span_processor import BSP_VARIABLES
from otel_gevent_distro.runtime.gevent_state import module_patched


@pytest.fixture(autouse=True)
def _unpatched() -> None:
    if module_patched("threading"):
        pytest.skip("the test process is monkey-patched; these tests need real threads")


class Recorder(SpanExporter):
    """Records batches; can hold every export until ``gate`` opens, fail, or raise."""

    def __init__(self, gate: threading.Event | None = None, result: Any = SpanExportResult.SUCCESS) -> None:
        self.batches: list[list[Any]] = []
        self.gate = gate
        self.entered = threading.Event()
        self.result = result
        self.raises = False
        self.shut_down = False

    def export(self, batch: Sequence[Any]) -> SpanExportResult:
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(30)
        if self.raises:
            raise RuntimeError("exporter bug")
        self.batches.append(list(batch))
        return self.result  # type: ignore[no-any-return]

    @property
    def items(self) -> list[Any]:
        return [item for batch in self.batches for item in batch]

    def shutdown(self) -> None:
        self.shut_down = True


def pipeline(exporter: Recorder, **options: Any) -> BatchPipeline:
    return BatchPipeline(exporter, BatchOptions(**options), "spans")


def warnings_from_us(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "otel_gevent_distro" and r.levelno == logging.WARNING]


def wait_until(check: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.01)
    return bool(check())


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


# -- queue, wake-up, drops ----------------------------------------------------


def test_a_full_batch_wakes_the_worker_before_the_schedule_delay() -> None:
    exporter = Recorder()
    pipe = pipeline(exporter, max_queue_size=100, schedule_delay_millis=60_000, max_export_batch_size=10)
    for i in range(10):
        pipe.emit(i)
    assert wait_until(lambda: len(exporter.items) == 10)
    assert pipe.worker.running
    assert exporter.items == list(range(10))
    assert pipe.exported == 10
    pipe.shutdown()


def test_the_schedule_delay_exports_a_partial_batch() -> None:
    exporter = Recorder()
    pipe = pipeline(exporter, max_queue_size=100, schedule_delay_millis=50, max_export_batch_size=10)
    pipe.emit("only")
    assert wait_until(lambda: exporter.items == ["only"])
    pipe.shutdown()


def test_queue_full_counts_every_drop_in_one_rate_limited_line(
    caplog: pytest.LogCaptureFixture, gate: threading.Event
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    exporter = Recorder(gate)
    pipe = pipeline(exporter, max_queue_size=10, schedule_delay_millis=60_000, max_export_batch_size=5)
    for i in range(5):
        pipe.emit(i)
    assert exporter.entered.wait(10), "the worker never started exporting"
    # The worker is stuck in the exporter with items 0-4: 10 more fill the queue, 7 more are dropped.
    for i in range(5, 22):
        pipe.emit(i)
    assert pipe.dropped == 7
    # The emit path never logs: the export thread reports the drops once its export returns.
    assert warnings_from_us(caplog) == []

    gate.set()
    pipe.shutdown()
    assert exporter.items == list(range(15))
    assert (pipe.exported, pipe.failed, pipe.dropped, pipe.lost_at_exit) == (15, 0, 7, 0)
    lines = warnings_from_us(caplog)
    assert len(lines) == 2, lines
    assert "export queue full (10 spans): dropped 7 spans (7 in total)" in lines[0]
    assert "7 spans of this process were not delivered" in lines[1]
    assert "7 dropped because the queue was full" in lines[1]


def test_drop_lines_are_rate_limited_not_per_drop(caplog: pytest.LogCaptureFixture, gate: threading.Event) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    exporter = Recorder(gate)
    pipe = pipeline(exporter, max_queue_size=2, schedule_delay_millis=60_000, max_export_batch_size=2)
    for i in range(2):
        pipe.emit(i)
    assert exporter.entered.wait(10)
    for i in range(1000):
        pipe.emit(i)
    assert pipe.dropped == 998
    gate.set()
    assert pipe.flush() is True
    for i in range(1000):
        pipe.emit(i)
    assert pipe.flush() is True
    assert len(warnings_from_us(caplog)) == 1


# -- flush and shutdown ---------------------------------------------------------


def test_shutdown_exports_everything_still_queued() -> None:
    exporter = Recorder()
    pipe = pipeline(exporter, max_queue_size=2048, schedule_delay_millis=60_000, max_export_batch_size=512)
    for i in range(1300):
        pipe.emit(i)
    pipe.shutdown()
    assert exporter.items == list(range(1300))
    assert max(len(batch) for batch in exporter.batches) <= 512
    assert exporter.shut_down


def test_force_flush_exports_and_returns_true() -> None:
    exporter = Recorder()
    pipe = pipeline(exporter, max_queue_size=100, schedule_delay_millis=60_000, max_export_batch_size=50)
    for i in range(7):
        pipe.emit(i)
    assert pipe.flush() is True
    assert exporter.items == list(range(7))
    pipe.shutdown()


def test_force_flush_and_shutdown_are_bounded_by_the_export_timeout(
    caplog: pytest.LogCaptureFixture, gate: threading.Event
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    exporter = Recorder(gate)
    pipe = pipeline(
        exporter, max_queue_size=100, schedule_delay_millis=60_000, max_export_batch_size=5, export_timeout_millis=300
    )
    for i in range(8):
        pipe.emit(i)
    assert exporter.entered.wait(10)
    began = time.monotonic()
    assert pipe.flush() is False
    pipe.shutdown()
    assert time.monotonic() - began < 5  # two waits of 0.3 s each, generously
    # The thread holds items 0-4 in the hung export; 5-7 were never sent.
    assert (pipe.lost_at_exit, pipe.dropped) == (8, 0)
    expected = "8 spans of this process were not delivered: 3 still queued and 5 in flight"
    assert any(expected in line for line in warnings_from_us(caplog)), warnings_from_us(caplog)


def test_emits_after_shutdown_are_ignored_and_counted() -> None:
    exporter = Recorder()
    pipe = pipeline(exporter, max_queue_size=10, schedule_delay_millis=60_000, max_export_batch_size=5)
    pipe.shutdown()
    pipe.emit("late")
    assert pipe.dropped_after_shutdown == 1
    assert pipe.flush() is False
    assert exporter.items == []


def test_failed_and_raising_exports_are_counted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    exporter = Recorder(result=SpanExportResult.FAILURE)
    pipe = pipeline(exporter, max_queue_size=10, schedule_delay_millis=60_000, max_export_batch_size=5)
    pipe.emit(1)
    pipe.flush()
    exporter.raises = True
    pipe.emit(2)
    pipe.flush()
    assert (pipe.exported, pipe.failed) == (0, 2)
    assert any("exporting 1 spans raised" in line for line in warnings_from_us(caplog))
    pipe.shutdown()


# -- the three SDK-facing classes ------------------------------------------------


def test_span_processor_exports_sampled_spans_through_a_tracer_provider() -> None:
    exporter = Recorder()
    processor = GeventBatchSpanProcessor(exporter, schedule_delay_millis=60_000)
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    for i in range(3):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    provider.shutdown()
    assert [span.name for span in exporter.items] == ["span-0", "span-1", "span-2"]
    assert (processor.exported, processor.failed, processor.dropped) == (3, 0, 0)
    assert processor.span_exporter is exporter


def test_log_processor_exports_log_records() -> None:
    exporter = InMemoryLogRecordExporter()
    processor = GeventBatchLogRecordProcessor(exporter, schedule_delay_millis=60_000)
    provider = LoggerProvider()
    provider.add_log_record_processor(processor)
    provider.get_logger("test").emit(LogRecord(body="hello there", severity_number=SeverityNumber.WARN))
    provider.shutdown()
    records = exporter.get_finished_logs()
    assert [r.log_record.body for r in records] == ["hello there"]
    assert processor.exported == 1


class MetricsRecorder(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.exports: list[MetricsData] = []

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self.exports.append(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass

    def counter_value(self, name: str) -> int | None:
        value = None
        for data in self.exports:
            for resource_metrics in data.resource_metrics:
                for scope_metrics in resource_metrics.scope_metrics:
                    for metric in scope_metrics.metrics:
                        if metric.name == name:
                            value = sum(point.value for point in metric.data.data_points)  # type: ignore[union-attr]
        return value


def test_metric_reader_collects_periodically_and_once_more_at_shutdown() -> None:
    exporter = MetricsRecorder()
    reader = GeventPeriodicMetricReader(exporter, export_interval_millis=50)
    provider = MeterProvider(metric_readers=[reader])
    counter = provider.get_meter("test").create_counter("things")
    counter.add(2)
    assert wait_until(lambda: exporter.counter_value("things") == 2)
    assert reader.worker.running
    counter.add(3)
    provider.shutdown()
    assert exporter.counter_value("things") == 5
    assert reader.exported >= 2


def test_metric_reader_with_infinite_interval_only_collects_on_demand() -> None:
    exporter = MetricsRecorder()
    reader = GeventPeriodicMetricReader(exporter, export_interval_millis=float("inf"))
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("test").create_counter("things").add(1)
    assert exporter.counter_value("things") is None
    assert reader.force_flush() is True
    assert exporter.counter_value("things") == 1
    provider.shutdown()


# -- options ----------------------------------------------------------------------


def test_options_default_to_the_sdk_defaults() -> None:
    assert resolve_batch_options(BSP_VARIABLES, environ={}) == BatchOptions(2048, 5000, 512, 30000)
    variables = ("OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT")
    assert resolve_metric_options(*variables, environ={}) == MetricOptions(60000, 30000)


def test_options_come_from_the_environment_and_arguments_win() -> None:
    env = {
        "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        "OTEL_BSP_SCHEDULE_DELAY": "250",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20",
        "OTEL_BSP_EXPORT_TIMEOUT": "1500",
    }
    assert resolve_batch_options(BSP_VARIABLES, environ=env) == BatchOptions(100, 250, 20, 1500)
    assert resolve_batch_options(BSP_VARIABLES, max_export_batch_size=5, environ=env).max_export_batch_size == 5


@pytest.mark.parametrize(
    ("variable", "value", "field", "default"),
    [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "lots", "max_queue_size", 2048),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "0", "max_queue_size", 2048),
        ("OTEL_BSP_SCHEDULE_DELAY", "-5", "schedule_delay_millis", 5000),
        ("OTEL_BSP_SCHEDULE_DELAY", "1.5", "schedule_delay_millis", 5000),
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "0", "max_export_batch_size", 512),
        ("OTEL_BSP_EXPORT_TIMEOUT", "soon", "export_timeout_millis", 30000),
    ],
)
def test_bad_environment_values_warn_once_and_use_the_sdk_default(
    caplog: pytest.LogCaptureFixture, variable: str, value: str, field: str, default: int
) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    options = resolve_batch_options(BSP_VARIABLES, environ={variable: value})
    assert getattr(options, field) == default
    lines = warnings_from_us(caplog)
    assert len(lines) == 1 and variable in lines[0] and repr(value) in lines[0], lines


def test_a_batch_larger_than_the_queue_from_the_environment_is_clamped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    options = resolve_batch_options(BSP_VARIABLES, environ={"OTEL_BSP_MAX_QUEUE_SIZE": "100"})
    assert (options.max_queue_size, options.max_export_batch_size) == (100, 100)
    assert len(warnings_from_us(caplog)) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"max_queue_size": 0}, "max_queue_size must be a positive integer."),
        ({"schedule_delay_millis": 0}, "schedule_delay_millis must be positive."),
        ({"max_export_batch_size": -1}, "max_export_batch_size must be a positive integer."),
        ({"max_queue_size": 10, "max_export_batch_size": 20}, "less than or equal to max_queue_size"),
    ],
)
def test_bad_arguments_raise_like_the_sdk(arguments: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeventBatchSpanProcessor(Recorder(), **arguments)


def test_bad_metric_interval_in_the_environment_warns_and_uses_the_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    variables = ("OTEL_METRIC_EXPORT_INTERVAL", "OTEL_METRIC_EXPORT_TIMEOUT")
    options = resolve_metric_options(*variables, environ={"OTEL_METRIC_EXPORT_INTERVAL": "0"})
    assert options.export_interval_millis == 60000
    assert len(warnings_from_us(caplog)) == 1
    with pytest.raises(ValueError, match="interval value"):
        GeventPeriodicMetricReader(MetricsRecorder(), export_interval_millis=0)


# -- the package stays light --------------------------------------------------------


def test_importing_the_package_imports_neither_opentelemetry_nor_gevent() -> None:
    probe = (
        "import sys, otel_gevent_distro\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('opentelemetry', 'gevent', 'grpc'))\n"
        "assert not heavy, heavy\n"
        "from otel_gevent_distro import GeventBatchSpanProcessor, GeventBatchLogRecordProcessor\n"
        "from otel_gevent_distro import GeventPeriodicMetricReader\n"
        "assert 'gevent' not in sys.modules\n"
        "print(GeventBatchSpanProcessor.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "GeventBatchSpanProcessor"


# -- concurrency: shutdown and flush from many threads at once ------------------------


class CountingMetrics(MetricsRecorder):
    def __init__(self) -> None:
        super().__init__()
        self.shutdowns = 0

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self.shutdowns += 1


def _at_once(action: Any, threads: int = 10) -> None:
    start = threading.Barrier(threads)

    def run() -> None:
        start.wait()
        action()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)


def test_ten_threads_shutting_the_metric_reader_down_give_one_final_export(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    exporter = CountingMetrics()
    reader = GeventPeriodicMetricReader(exporter, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader])
    provider.get_meter("test").create_counter("things").add(1)
    _at_once(reader.shutdown)
    assert (len(exporter.exports), exporter.shutdowns) == (1, 1)
    assert not reader.worker.running, "shutdown returned before the thread ended"
    assert sum("Can't shutdown multiple times" in line for line in warnings_from_us(caplog)) == 9


def test_ten_threads_shutting_a_pipeline_down_shut_the_exporter_down_once() -> None:
    exporter = Recorder()
    pipe = pipeline(exporter, max_queue_size=100, schedule_delay_millis=60_000, max_export_batch_size=10)
    shutdowns = []
    exporter.shutdown = lambda: shutdowns.append(1)  # type: ignore[method-assign]
    for i in range(7):
        pipe.emit(i)
    _at_once(pipe.shutdown)
    assert exporter.items == list(range(7))
    assert shutdowns == [1]
    assert not pipe.worker.running


def test_shutdown_returns_within_its_timeout_while_an_export_is_in_flight(gate: threading.Event) -> None:
    exporter = Recorder(gate)
    pipe = pipeline(exporter, max_queue_size=100, schedule_delay_millis=60_000, max_export_batch_size=2)
    pipe.emit(0)
    pipe.emit(1)
    assert exporter.entered.wait(10)
    began = time.monotonic()
    pipe.shutdown(timeout_millis=300)
    assert time.monotonic() - began < 0.3 + 0.5  # the timeout, and scheduling slack
    assert pipe.lost_at_exit == 2


def test_flushes_from_many_threads_each_see_their_items_exported() -> None:
    exporter = Recorder()
    pipe = pipeline(exporter, max_queue_size=10_000, schedule_delay_millis=60_000, max_export_batch_size=64)
    results: list[bool] = []

    def emit_and_flush() -> None:
        for i in range(50):
            pipe.emit(i)
        results.append(pipe.flush())

    _at_once(emit_and_flush)
    assert results == [True] * 10
    assert len(exporter.items) == 500
    pipe.shutdown()


def test_out_of_range_options_are_clamped_never_raised_later(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    options = resolve_batch_options(
        BSP_VARIABLES,
        environ={"OTEL_BSP_EXPORT_TIMEOUT": "100000000000000000000", "OTEL_BSP_SCHEDULE_DELAY": "100000000000"},
    )
    assert options.export_timeout_millis == 86_400_000
    assert options.schedule_delay_millis == 86_400_000
    assert len(warnings_from_us(caplog)) == 2
    exporter = Recorder()
    pipe = BatchPipeline(exporter, options, "spans")
    for i in range(100):
        pipe.emit(i)
    assert pipe.flush() is True
    pipe.shutdown()
    assert exporter.items == list(range(100))


# -- the SDK's own processor metrics ---------------------------------------------------


def _processor_metric_points(reader: Any) -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    data = reader.get_metrics_data()
    for resource_metrics in data.resource_metrics if data else ():
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                if metric.name.startswith("otel.sdk.processor"):
                    for point in metric.data.data_points:
                        attributes = tuple(
                            sorted((k, v) for k, v in point.attributes.items() if k != "otel.component.name")
                        )
                        points[(metric.name, attributes)] = point.value
    return points


@pytest.mark.applies_when(
    importlib.util.find_spec("opentelemetry.sdk._shared_internal._processor_metrics") is not None,
    reason="this SDK release has no processor metrics",
)
def test_processor_metrics_are_the_sdks_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
    seen = {}
    for name, processor_class in (("sdk", BatchSpanProcessor), ("distro", GeventBatchSpanProcessor)):
        reader = InMemoryMetricReader()
        meters = MeterProvider(metric_readers=[reader])
        processor = processor_class(Recorder(), max_queue_size=4, max_export_batch_size=2, meter_provider=meters)
        provider = TracerProvider()
        provider.add_span_processor(processor)
        tracer = provider.get_tracer("test")
        for _ in range(3):
            with tracer.start_as_current_span("s"):
                pass
        processor.force_flush()
        provider.shutdown()
        seen[name] = _processor_metric_points(reader)
        meters.shutdown()
    assert seen["distro"] == seen["sdk"], seen
    assert any(name == "otel.sdk.processor.span.processed" for name, _ in seen["sdk"]), seen


def test_the_metric_reader_reports_the_sdks_component_type() -> None:
    reader = GeventPeriodicMetricReader(MetricsRecorder(), export_interval_millis=60_000)
    stock = __import__("opentelemetry.sdk.metrics.export", fromlist=["x"]).PeriodicExportingMetricReader(
        MetricsRecorder(), export_interval_millis=60_000
    )
    assert getattr(reader, "_otel_component_type", None) == getattr(stock, "_otel_component_type", None)
    reader.shutdown()
    stock.shutdown()
