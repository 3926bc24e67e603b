"""The loop monitor parks while the hub polls, and still sees every block.

Each test runs a patched program with the health monitoring started on
in-memory SDK pipelines, and counts what the block histogram received and
how often the monitor thread woke. Blocks are 0.4 s against gevent's 0.1 s
threshold, so that each one spans several of the monitor's periods even
when a loaded machine wakes its thread late: a missed block is a bug, not
bad luck.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.launch import run_app, write_app

APP = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import json, os, random, socket, sys, threading, time
    import gevent
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from otel_gevent_distro.health import start_health_monitoring
    from otel_gevent_distro.settings import load_settings

    real_sleep = gevent.monkey.get_original("time", "sleep")
    start_native_thread = gevent.monkey.get_original("_thread", "start_new_thread")
    reader = InMemoryMetricReader()
    start_health_monitoring(
        load_settings(), meter_provider=MeterProvider(metric_readers=[reader]), logger_provider=LoggerProvider()
    )
    monitor = gevent.get_hub().periodic_monitoring_thread

    def blocks():
        data = reader.get_metrics_data()
        for resource_metrics in data.resource_metrics if data else []:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name == "gevent.loop.block.duration":
                        return [p.count for p in metric.data.data_points][0]
        return 0

    def report(**extra):
        print(json.dumps({
            "monitor": type(monitor).__name__,
            "parks": getattr(monitor, "parks", None),
            "wakes": getattr(monitor, "wakes", None),
            "blocks": blocks(),
            **extra,
        }), flush=True)

    mode = sys.argv[1]
    if mode == "idle":
        gevent.sleep(0.5)
        before = monitor.wakes, monitor.parks
        gevent.sleep(3)  # the lag probe wakes the hub once a second, nothing else does
        report(idle_wakes=monitor.wakes - before[0], idle_parks=monitor.parks - before[1])
    elif mode == "timer":
        # Blocks that begin when a timer wakes an idle hub.
        for delay in (0.3, 0.05, 0.7, 0.01, 0.45):
            gevent.sleep(delay)
            real_sleep(0.4)
        gevent.sleep(0.2)
        report()
    elif mode == "io":
        # Blocks that begin when another thread's bytes wake a hub waiting on a socket.
        ours, theirs = socket.socketpair()
        rng = random.Random(7)
        pauses = [rng.uniform(0.0, 0.3) for _ in range(12)]
        block_over = gevent.monkey.get_original("_thread", "allocate_lock")()
        def writer():
            for pause in pauses:
                block_over.acquire()  # the previous block ended: the hub polls again
                real_sleep(pause)
                theirs.send(b"x")
        start_native_thread(writer, ())
        for _ in pauses:
            ours.recv(1)
            real_sleep(0.4)
            block_over.release()
        gevent.sleep(0.2)
        report()
    elif mode == "short":
        # Blocks of 1.8x max_blocking_time (0.2 s here) that begin as a socket wakes an idle
        # hub, after the woken greenlet held the interpreter lock past the switch interval
        # (so that the monitor thread ran meanwhile) and switched once more, as a request's
        # handling does before it blocks.
        ours, theirs = socket.socketpair()
        block_over = gevent.monkey.get_original("_thread", "allocate_lock")()
        def writer():
            for pause in (0.05, 0.3, 0.0, 0.2, 0.1, 0.25, 0.02, 0.15, 0.3, 0.07):
                block_over.acquire()
                real_sleep(pause)
                theirs.send(b"x")
        start_native_thread(writer, ())
        for _ in range(10):
            ours.recv(1)
            busy_until = time.perf_counter() + 0.012
            while time.perf_counter() < busy_until:
                pass
            gevent.sleep(0)
            real_sleep(0.36)
            block_over.release()
        gevent.sleep(0.3)
        report()
    elif mode == "spawned":
        # Blocks in greenlets that an idle hub's callbacks switch into.
        for delay in (0.2, 0.0, 0.6):
            gevent.sleep(delay)
            gevent.spawn(real_sleep, 0.4).join()
        gevent.sleep(0.2)
        report()
    elif mode == "fork":
        gevent.sleep(0.5)
        pid = os.fork()
        if pid == 0:
            reader.get_metrics_data()  # the parent's points
            gevent.sleep(1.2)
            before = monitor.parks
            gevent.spawn_later(0.3, real_sleep, 0.4).join()
            gevent.sleep(0.2)
            report(role="child", parked_in_child=monitor.parks > before)
            os._exit(0)
        os.waitpid(pid, 0)
        report(role="parent")
"""


def _run(tmp_path: Path, mode: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    app = write_app(tmp_path, APP)
    settings = {"GEVENT_MAX_BLOCKING_TIME": "0.1", "OTEL_PYTHON_GEVENT_HEALTH_INTERVAL": "1", **(env or {})}
    result = run_app(app, "plain", env=settings, args=[mode])
    result.assert_clean()
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_an_idle_hub_lets_the_monitor_sleep(tmp_path: Path) -> None:
    (seen,) = _run(tmp_path, "idle")
    assert seen["monitor"] == "ParkingMonitor"
    # gevent's monitor would have woken 30 times in these 3 s; parked, the
    # monitor wakes once per hub wake-up (the lag probe's, once a second).
    assert 2 <= seen["idle_wakes"] <= 4
    assert seen["idle_parks"] >= 2
    assert seen["blocks"] == 0


def test_blocks_that_begin_as_a_timer_wakes_the_hub_are_all_seen(tmp_path: Path) -> None:
    (seen,) = _run(tmp_path, "timer")
    assert seen["blocks"] == 5
    assert seen["parks"] >= 3  # it did park between them


def test_blocks_that_begin_as_io_wakes_the_hub_are_all_seen(tmp_path: Path) -> None:
    (seen,) = _run(tmp_path, "io")
    assert seen["blocks"] == 12
    assert seen["parks"] >= 3


def test_blocks_under_twice_the_period_that_begin_after_a_wake_are_all_seen(tmp_path: Path) -> None:
    # Checked once per period after the wake-up, such a block would end before the
    # second check; checked every half period, 1.5x the period is always enough.
    (seen,) = _run(tmp_path, "short", env={"GEVENT_MAX_BLOCKING_TIME": "0.2"})
    assert seen["blocks"] == 10


def test_blocks_in_spawned_greenlets_are_all_seen(tmp_path: Path) -> None:
    (seen,) = _run(tmp_path, "spawned")
    assert seen["blocks"] == 3


def test_a_forked_child_parks_and_sees_its_own_blocks(tmp_path: Path) -> None:
    child, parent = _run(tmp_path, "fork")
    assert child["role"] == "child"
    assert child["parked_in_child"] is True
    assert child["blocks"] == 1
    assert parent["blocks"] == 0


def test_libev_through_cffi_parks_too(tmp_path: Path) -> None:
    (seen,) = _run(tmp_path, "timer", env={"GEVENT_LOOP": "libev-cffi"})
    assert seen["monitor"] == "ParkingMonitor"
    assert seen["blocks"] == 5
    assert seen["parks"] >= 3


def test_the_users_own_gevent_monitor_is_left_as_gevent_makes_it(tmp_path: Path) -> None:
    (seen,) = _run(tmp_path, "timer", env={"GEVENT_MONITOR_THREAD_ENABLE": "true"})
    assert seen["monitor"] == "PeriodicMonitoringThread"
    assert seen["blocks"] == 5


def test_a_libuv_loop_gets_gevents_monitor_and_still_sees_blocks(tmp_path: Path) -> None:
    # libuv runs I/O callbacks inside its poll, before any check watcher: no parking there.
    (seen,) = _run(tmp_path, "timer", env={"GEVENT_LOOP": "libuv"})
    assert seen["monitor"] == "PeriodicMonitoringThread"
    assert seen["blocks"] == 5


def test_moved_gevent_internals_are_named(monkeypatch: Any) -> None:
    import gevent
    import gevent._monitor

    from otel_gevent_distro.health.parking_monitor import parking_supported

    hub = gevent.get_hub()
    assert parking_supported(hub) == ""
    monkeypatch.setattr(gevent._monitor, "PeriodicMonitoringThread", type("Moved", (), {}))
    reason = parking_supported(hub)
    assert "gevent's monitor has no" in reason
    assert "calculate_sleep_time" in reason


FALLBACK_APP = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import gevent
    import otel_gevent_distro.health.parking_monitor as parking
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.metrics import MeterProvider
    from otel_gevent_distro.health import start_health_monitoring
    from otel_gevent_distro.settings import load_settings

    parking._MONITOR_NAMES += ("a_name_a_future_gevent_renamed",)
    start_health_monitoring(load_settings(), meter_provider=MeterProvider(), logger_provider=LoggerProvider())
    print(type(gevent.get_hub().periodic_monitoring_thread).__name__)
"""


def test_moved_gevent_internals_give_gevents_monitor_and_one_warning(tmp_path: Path) -> None:
    result = run_app(write_app(tmp_path, FALLBACK_APP), "plain", env={"GEVENT_MAX_BLOCKING_TIME": "0.1"})
    result.assert_clean()
    assert result.stdout.strip() == "PeriodicMonitoringThread"
    warnings = [line for line in result.stderr.splitlines() if "idle-parking loop monitor is not in place" in line]
    assert len(warnings) == 1, result.stderr
    assert "a_name_a_future_gevent_renamed" in warnings[0]
