"""The export pipeline's lifecycle when things happen at the same time.

Programs are launched as users launch them (``opentelemetry-instrument`` and
the sitecustomize folder) against the real test receiver, with the fault
each case needs: a collector that answers late, refuses or never answers; a
fork while an export is waiting for its answer; a child killed before it
could flush; a ``SIGTERM`` handled by the program. What arrived is counted
per process, duplicates included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.launch import BIN, Result, clean_environment, run_app, sitecustomize_folder, write_app
from tests.receiver import BlackHole, OtlpReceiver

VIAS = ["instrument", "sitecustomize"]
#: Spans only, unless a test turns the other signals on.
SPANS_ONLY = {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_PYTHON_GEVENT_HEALTH": "false"}


def _env(receiver: OtlpReceiver, protocol: str = "http/protobuf", **extra: str) -> dict[str, str]:
    return {**receiver.env(protocol), **SPANS_ONLY, **extra}


def _last_json(result: Result) -> dict:
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- fork ---------------------------------------------------------------------------

FORK_MID_EXPORT = """
    import json, os, time
    from opentelemetry import trace

    tracer = trace.get_tracer("fork")
    for i in range(4):
        with tracer.start_as_current_span(f"parent-{i}", attributes={"pid": os.getpid()}):
            pass
    time.sleep(0.45)  # the export went out after 200 ms and waits for the 0.5 s answer
    pid = os.fork()
    if pid == 0:
        for i in range(4):
            with tracer.start_as_current_span(f"child-{i}", attributes={"pid": os.getpid()}):
                pass
        trace.get_tracer_provider().force_flush()
        os._exit(0)
    os.waitpid(pid, 0)
    flushed = trace.get_tracer_provider().force_flush()
    print(json.dumps({"parent": os.getpid(), "child": pid, "flushed": flushed}))
"""


@pytest.mark.parametrize("via", VIAS)
def test_a_fork_while_an_export_waits_for_its_answer_delivers_every_span_once(
    tmp_path: Path, receiver: OtlpReceiver, via: str
) -> None:
    receiver.configure(delay_s=0.5)
    result = run_app(write_app(tmp_path, FORK_MID_EXPORT), via, env=_env(receiver))
    result.assert_clean()
    seen = _last_json(result)
    assert seen["flushed"] is True
    spans = receiver.wait_for(8, signal="spans", timeout=30)
    time.sleep(1.0)  # anything duplicated would arrive meanwhile
    spans = receiver.spans()
    names = Counter(span.name for span in spans)
    assert names == Counter([f"parent-{i}" for i in range(4)] + [f"child-{i}" for i in range(4)]), names
    by_pid = {span.name: span.attributes["pid"] for span in spans}
    assert {by_pid[f"parent-{i}"] for i in range(4)} == {seen["parent"]}
    assert {by_pid[f"child-{i}"] for i in range(4)} == {seen["child"]}


METRICS_CHILD = """
    import json, os, signal, time
    from opentelemetry import metrics

    counter = metrics.get_meter("child").create_counter("child.ticks")
    pid = os.fork()
    if pid == 0:
        for _ in range(100):  # 2 s of a counter every 20 ms, then killed: no flush, no atexit
            counter.add(1, {"pid": os.getpid()})
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGKILL)
    os.waitpid(pid, 0)
    print(json.dumps({"child": pid}))
"""


@pytest.mark.parametrize("via", VIAS)
def test_a_child_that_only_records_metrics_exports_on_its_own_schedule(
    tmp_path: Path, receiver: OtlpReceiver, via: str
) -> None:
    env = {
        **receiver.env("http/protobuf"),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_PYTHON_GEVENT_HEALTH": "false",
    }
    result = run_app(write_app(tmp_path, METRICS_CHILD), via, env=env)
    result.assert_clean()
    child = _last_json(result)["child"]
    from_child = [
        m
        for m in receiver.metrics()
        if m.name == "child.ticks" and any(point["attributes"].get("pid") == child for point in m.data_points)
    ]
    # About ten intervals in 2 s; a child that waits for a span to start its thread sends none.
    assert len(from_child) >= 4, f"{len(from_child)} exports from the child"


# --- exit ---------------------------------------------------------------------------

THOUSAND_THEN_EXIT = """
    import json, time
    from opentelemetry import trace

    tracer = trace.get_tracer("exit")
    for i in range(1000):
        with tracer.start_as_current_span(f"span-{i}"):
            pass
    print(json.dumps({"exiting_at": time.time()}), flush=True)
"""


def _exit_seconds(result: Result, ended_at: float) -> float:
    return ended_at - _last_json(result)["exiting_at"]


@pytest.mark.parametrize("via", VIAS)
def test_exit_against_a_slow_collector_delivers_everything_within_the_budget(
    tmp_path: Path, receiver: OtlpReceiver, via: str
) -> None:
    receiver.configure(delay_s=2.0)
    # Two requests of 2 s each (a full batch of 512, then the rest): about 4 s of the default
    # 5 s (benchmarks/lifecycle.py); the budget is doubled here for a loaded test machine.
    env = _env(receiver, OTEL_PYTHON_GEVENT_EXIT_TIMEOUT="10000")
    result = run_app(write_app(tmp_path, THOUSAND_THEN_EXIT), via, env=env)
    ended = time.time()
    result.assert_clean()
    assert _exit_seconds(result, ended) < 10.0 + 1.5
    names = Counter(span.name for span in receiver.spans())
    assert len(names) == 1000 and set(names.values()) == {1}, f"{len(names)} distinct, {sum(names.values())} in all"


@pytest.mark.parametrize("status", [503, 429])
def test_exit_against_a_refusing_collector_ends_within_the_budget_and_counts_the_loss(
    tmp_path: Path, receiver: OtlpReceiver, status: int
) -> None:
    receiver.configure(status=status)
    env = _env(receiver, OTEL_PYTHON_GEVENT_EXIT_TIMEOUT="2000")
    result = run_app(write_app(tmp_path, THOUSAND_THEN_EXIT), "instrument", env=env)
    ended = time.time()
    assert result.returncode == 0, result.stderr
    assert _exit_seconds(result, ended) < 2.0 + 1.5
    lines = [line for line in result.warnings() if "were not delivered" in line]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("otel-gevent-distro: 1000 spans of this process were not delivered"), lines


def test_exit_against_a_collector_that_never_answers_ends_within_the_budget(tmp_path: Path) -> None:
    with BlackHole() as hole:
        env = {
            **SPANS_ONLY,
            "OTEL_EXPORTER_OTLP_ENDPOINT": hole.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "2000",
        }
        result = run_app(write_app(tmp_path, THOUSAND_THEN_EXIT), "sitecustomize", env=env)
        ended = time.time()
    assert result.returncode == 0, result.stderr
    assert _exit_seconds(result, ended) < 2.0 + 1.5
    assert any("1000 spans of this process were not delivered" in line for line in result.warnings()), result.stderr


SIGTERM_APP = """
    import json, signal, sys, time
    from opentelemetry import trace

    made = 0

    def stop(signum, frame):
        print(json.dumps({"made": made}), flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    tracer = trace.get_tracer("sigterm")
    print("ready", flush=True)
    while True:
        with tracer.start_as_current_span(f"span-{made}"):
            pass
        made += 1  # counted once ended: a span the signal interrupts mid-end() is not counted
        time.sleep(0.002)
"""


@pytest.mark.parametrize("via", VIAS)
def test_sigterm_handled_by_the_program_delivers_what_it_made(tmp_path: Path, receiver: OtlpReceiver, via: str) -> None:
    receiver.configure(delay_s=2.0)
    app = write_app(tmp_path, SIGTERM_APP)
    env = clean_environment()
    env.update(_env(receiver))
    command = [str(BIN / "python"), str(app)]
    if via == "instrument":
        env["OTEL_PYTHON_DISTRO"] = "gevent"
        command = [str(BIN / "opentelemetry-instrument"), *command]
    else:
        env["PYTHONPATH"] = sitecustomize_folder()
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    result = Result(process.returncode, "ready\n" + stdout, stderr)
    result.assert_clean()
    made = _last_json(result)["made"]
    names = Counter(span.name for span in receiver.spans())
    assert set(names.values()) <= {1}, "duplicates"
    # Python runs the handler between any two bytecodes: when that is inside the SDK's
    # span.end(), the span never reaches a processor (stock loses it too); all others arrive.
    assert made <= len(names) <= made + 1, f"{len(names)} arrived, {made} made"


# --- OTLP/gRPC at exit ---------------------------------------------------------------

NO_TELEMETRY = """
    print("done")
"""

ONE_SPAN = """
    from opentelemetry import trace

    with trace.get_tracer("grpc-exit").start_as_current_span("one"):
        pass
    print("done")
"""


@pytest.mark.parametrize("via", VIAS)
def test_grpc_program_without_telemetry_exits_quietly(tmp_path: Path, receiver: OtlpReceiver, via: str) -> None:
    env = {**receiver.env("grpc"), "OTEL_METRIC_EXPORT_INTERVAL": "60000"}
    result = run_app(write_app(tmp_path, NO_TELEMETRY), via, env=env)
    result.assert_clean()
    assert result.stdout.strip() == "done"
    assert "RuntimeError" not in result.stderr, result.stderr


def test_grpc_exit_against_an_unavailable_collector_is_one_line(tmp_path: Path, receiver: OtlpReceiver) -> None:
    receiver.configure(status=503)
    env = {**receiver.env("grpc"), **SPANS_ONLY, "OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "2000"}
    result = run_app(write_app(tmp_path, ONE_SPAN), "instrument", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "RuntimeError" not in result.stderr, result.stderr
    lines = [line for line in result.warnings() if "were not delivered" in line]
    assert len(lines) == 1, result.stderr


# --- telemetry made while exporting ----------------------------------------------------

LOGS_WHILE_EXPORTING = """
    import logging
    from opentelemetry import trace

    logging.getLogger("app").warning("one record")
    with trace.get_tracer("reentrant").start_as_current_span("one"):
        pass
    print("done")
"""


def test_an_exporter_logging_through_the_log_pipeline_neither_deadlocks_nor_recurses(
    tmp_path: Path, receiver: OtlpReceiver
) -> None:
    # The collector refuses: the OTLP exporters log their failures on the
    # export thread, and the LoggingHandler on the root logger turns those
    # lines into log records of the same pipeline.
    receiver.configure(status=400)
    env = {
        **receiver.env("http/protobuf"),
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED": "true",
        "OTEL_PYTHON_GEVENT_HEALTH": "false",
        "OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "2000",
    }
    began = time.monotonic()
    result = run_app(write_app(tmp_path, LOGS_WHILE_EXPORTING), "instrument", env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "done"
    assert time.monotonic() - began < 30
    assert "RecursionError" not in result.stderr, result.stderr


def test_the_budget_option_is_read_from_the_environment(tmp_path: Path) -> None:
    from otel_gevent_distro.settings import load_settings

    assert load_settings({}).exit_timeout_millis == 5000
    assert load_settings({"OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "250"}).exit_timeout_millis == 250
    assert load_settings({"OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "1e30"}).exit_timeout_millis == 120_000
    assert load_settings({"OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "soon"}).exit_timeout_millis == 5000
    assert os.environ.get("OTEL_PYTHON_GEVENT_EXIT_TIMEOUT") is None
