"""Bad options and missing pieces: one clear line, then the application runs on.

Every case launches a real program through a real launch path, checks that
its exit code is kept (the app exits 3), that stderr has no traceback, and
that the distro said exactly one thing, naming the variable or module.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.launch import run_app, write_app

APP = """
    import sys
    from opentelemetry import trace
    with trace.get_tracer("bad-input").start_as_current_span("still-traced"):
        pass
    sys.exit(3)
"""


def launch(tmp_path: Path, receiver, env: dict[str, str], via: str = "instrument"):
    result = run_app(write_app(tmp_path, APP), via, env={**receiver.env("http/protobuf"), **env})
    result.assert_clean(expected_returncode=3)
    return result


@pytest.mark.parametrize("via", ["instrument", "sitecustomize"])
@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"OTEL_PYTHON_GEVENT_PATCH": "sometimes"}, "OTEL_PYTHON_GEVENT_PATCH='sometimes' is not valid"),
        ({"OTEL_PYTHON_GEVENT_PATCH_EXCLUDE": "dns,teleport"}, "OTEL_PYTHON_GEVENT_PATCH_EXCLUDE='teleport'"),
        ({"OTEL_PYTHON_GEVENT_PRELOAD": "json,not-a-module"}, "OTEL_PYTHON_GEVENT_PRELOAD='not-a-module'"),
        ({"OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS": "maybe"}, "OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS='maybe'"),
        ({"OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS": "redis"}, "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS='redis'"),
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, "OTEL_EXPORTER_OTLP_PROTOCOL='carrier-pigeon'"),
        ({"OTEL_TRACES_EXPORTER": "otlp,bogus"}, "OTEL_TRACES_EXPORTER=bogus"),
    ],
)
def test_bad_option_is_one_line_and_spans_still_arrive(
    tmp_path: Path, receiver, via: str, env: dict[str, str], expected: str
) -> None:
    result = launch(tmp_path, receiver, env, via)
    [line] = result.warnings()
    assert expected in line
    assert [s.name for s in receiver.wait_for(1, signal="spans", timeout=30)] == ["still-traced"]


def test_missing_preload_module_is_one_line_each(tmp_path: Path, receiver) -> None:
    result = launch(tmp_path, receiver, {"OTEL_PYTHON_GEVENT_PRELOAD": "no_such_module_here,no_such.pkg"})
    assert result.warnings() == [
        "otel-gevent-distro: OTEL_PYTHON_GEVENT_PRELOAD names no_such_module_here, which is not installed; "
        "nothing preloaded for it.",
        "otel-gevent-distro: OTEL_PYTHON_GEVENT_PRELOAD names no_such.pkg, which is not installed; "
        "nothing preloaded for it.",
    ], result.stderr


def test_preload_that_raises_is_one_warning(tmp_path: Path, receiver) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "explodes_on_import.py").write_text("raise RuntimeError('boom at import')\n")
    (lib / "exits_on_import.py").write_text("import sys\nsys.exit('bye at import')\n")
    env = {"OTEL_PYTHON_GEVENT_PRELOAD": "explodes_on_import,exits_on_import", "PYTHONPATH": str(lib)}
    result = launch(tmp_path, receiver, env, via="sitecustomize")
    assert len(result.warnings()) == 2
    assert "importing explodes_on_import failed (RuntimeError: boom at import)" in result.warnings()[0]
    assert "importing exits_on_import failed (SystemExit: bye at import)" in result.warnings()[1]
    receiver.wait_for(1, signal="spans", timeout=30)


@pytest.mark.parametrize("via", ["instrument", "sitecustomize"])
def test_gevent_missing_is_one_warning(tmp_path: Path, receiver, via: str) -> None:
    shim = tmp_path / "shim" / "gevent"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text("raise ImportError('No module named gevent (hidden for this test)')\n")
    result = launch(tmp_path, receiver, {"PYTHONPATH": str(shim.parent)}, via)
    [line] = result.warnings()
    assert "gevent cannot be imported" in line and "runs unpatched" in line
    receiver.wait_for(1, signal="spans", timeout=30)


def test_sdk_build_failure_is_one_line(tmp_path: Path, receiver) -> None:
    result = launch(tmp_path, receiver, {"OTEL_TRACES_SAMPLER": "no_such_sampler", "OTEL_TRACES_EXPORTER": "otlp"})
    assert len(result.warnings()) <= 1
    assert "Traceback" not in result.stderr


def test_telemetry_disabled_by_none_exporters_is_quiet(tmp_path: Path, receiver) -> None:
    env = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none"}
    result = launch(tmp_path, receiver, env)
    assert result.warnings() == []
    assert receiver.spans() == []


def test_dead_collector_does_not_hurt_the_app(tmp_path: Path, receiver) -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_EXPORTER_OTLP_TIMEOUT": "1000"}
    result = run_app(write_app(tmp_path, APP), "instrument", env=env)
    assert result.returncode == 3
    assert "Traceback" not in result.stderr


def test_excluding_thread_keeps_real_threads_working(tmp_path: Path, receiver) -> None:
    """``patch_all(thread=False)`` alone makes concurrent.futures die with LoopExit
    (the SDK's resource detection uses it); the distro leaves queue unpatched too."""
    app = write_app(
        tmp_path,
        """
        import gevent.monkey
        from concurrent.futures import ThreadPoolExecutor
        from opentelemetry import trace
        with ThreadPoolExecutor(2) as pool:
            print(sum(pool.map(abs, [-1, -2])), gevent.monkey.is_module_patched("threading"))
        with trace.get_tracer("t").start_as_current_span("threads-real"):
            pass
        """,
    )
    result = run_app(
        app, "instrument", env={**receiver.env("http/protobuf"), "OTEL_PYTHON_GEVENT_PATCH_EXCLUDE": "thread"}
    )
    result.assert_clean()
    assert result.stdout.split() == ["3", "False"]
    assert result.warnings() == []
    receiver.wait_for(1, signal="spans", timeout=30)
