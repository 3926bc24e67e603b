"""The reported case and the start-up order, through each launch path a user has.

An application that patches gevent itself, imports python-magic (which runs
``ldconfig`` through ``subprocess`` at import) and traces a span must start
cleanly, keep its exit code and deliver the span to a real OTLP receiver.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.launch import run_app, write_app

PATHS = ("instrument", "sitecustomize")

REPORTED_CASE = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import subprocess
    import magic
    from opentelemetry import trace

    tracer = trace.get_tracer("reported-case")
    with tracer.start_as_current_span("reported-case") as span:
        span.set_attribute("mime", magic.from_buffer(b"%PDF-1.4 test", mime=True))
        subprocess.run(["true"], check=True)
    print("done")
"""


@pytest.mark.parametrize("via", PATHS)
@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_reported_case_is_clean_and_exports(tmp_path: Path, receiver, via: str, protocol: str) -> None:
    app = write_app(tmp_path, REPORTED_CASE)
    result = run_app(app, via, env=receiver.env(protocol))
    result.assert_clean()
    assert result.stdout.strip() == "done"
    spans = receiver.wait_for(1, signal="spans", timeout=30)
    assert [s.name for s in spans] == ["reported-case"]
    assert spans[0].attributes["mime"] == "application/pdf"
    assert spans[0].resource["service.name"] == "test-app"


ORDER_PROBE = """
    import json, sys
    import gevent.monkey
    from opentelemetry import trace
    from otel_gevent_distro.startup.sequence import bootstrap_result
    from otel_gevent_distro.startup.configurator import GeventConfigurator

    result = bootstrap_result()
    print(json.dumps({
        "patched_by_distro": result.patch.patched_by_distro,
        "already_patched": result.patch.already_patched,
        "sdk_imported_before_patch": result.patch.sdk_imported_before,
        "thread_patched": gevent.monkey.is_module_patched("threading"),
        "preloaded": list(result.preload.imported),
        "our_configurator_ran": GeventConfigurator._instance is not None,
        "provider": type(trace.get_tracer_provider()).__module__,
    }))
"""


@pytest.mark.parametrize("via", PATHS)
def test_patch_happens_before_the_sdk_and_our_configurator_builds_it(tmp_path: Path, receiver, via: str) -> None:
    # opentelemetry-distro's own distro and configurator are installed beside
    # ours (a dependency) and OTEL_PYTHON_CONFIGURATOR is unset.
    result = run_app(write_app(tmp_path, ORDER_PROBE), via, env=receiver.env("http/protobuf"))
    result.assert_clean()
    probe = json.loads(result.stdout)
    assert probe == {
        "patched_by_distro": True,
        "already_patched": False,
        "sdk_imported_before_patch": False,
        "thread_patched": True,
        "preloaded": ["magic"],
        "our_configurator_ran": True,
        "provider": "opentelemetry.sdk.trace",
    }
    assert result.warnings() == []
    assert "not loaded" not in result.stderr


@pytest.mark.parametrize("via", PATHS)
def test_import_order_seen_from_outside(tmp_path: Path, receiver, via: str) -> None:
    """``-X importtime`` lists modules as they finish importing: gevent.monkey and
    the preloaded magic must come before any module of the SDK."""
    app = write_app(tmp_path, "print('ok')\n")
    result = run_app(app, via, env=receiver.env("http/protobuf"), python_args=["-X", "importtime"])
    assert result.returncode == 0, result.stderr
    order = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    first_sdk = min(i for i, name in enumerate(order) if name.startswith("opentelemetry.sdk"))
    assert order.index("gevent.monkey") < first_sdk
    assert order.index("magic.loader") < first_sdk  # the submodule that runs ldconfig


def test_sitecustomize_patches_before_any_opentelemetry_import(tmp_path: Path, receiver) -> None:
    app = write_app(tmp_path, "print('ok')\n")
    result = run_app(app, "sitecustomize", env=receiver.env("http/protobuf"), python_args=["-X", "importtime"])
    assert result.returncode == 0, result.stderr
    order = [line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import time:")]
    first_otel = min(i for i, name in enumerate(order) if name.startswith("opentelemetry"))
    assert order.index("gevent.monkey") < first_otel


def test_sitecustomize_chains_to_the_next_one(tmp_path: Path, receiver) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("import os\nprint('chained', os.environ.get('OTEL_PYTHON_DISTRO'))\n")
    app = write_app(tmp_path, "print('app')\n")
    result = run_app(app, "sitecustomize", env={**receiver.env("http/protobuf"), "PYTHONPATH": str(other)})
    result.assert_clean()
    assert result.stdout.splitlines() == ["chained gevent", "app"]


def test_sitecustomize_respects_the_users_choice_of_distro(tmp_path: Path, receiver) -> None:
    app = write_app(
        tmp_path,
        """
        import os
        from opentelemetry import trace
        print(os.environ["OTEL_PYTHON_DISTRO"], os.environ.get("OTEL_PYTHON_CONFIGURATOR"))
        """,
    )
    env = {**receiver.env("http/protobuf"), "OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator"}
    result = run_app(app, "sitecustomize", env=env)
    result.assert_clean()
    assert result.stdout.split() == ["distro", "configurator"]


def test_console_script_prints_an_importable_sitecustomize_folder() -> None:
    from tests.launch import sitecustomize_folder

    folder = Path(sitecustomize_folder())
    assert (folder / "sitecustomize.py").is_file()
    assert "run_sitecustomize" in (folder / "sitecustomize.py").read_text()


@pytest.mark.parametrize("via", PATHS)
def test_exit_code_is_kept(tmp_path: Path, receiver, via: str) -> None:
    app = write_app(
        tmp_path,
        """
        import sys
        from opentelemetry import trace
        with trace.get_tracer("t").start_as_current_span("before-exit"):
            pass
        sys.exit(3)
        """,
    )
    result = run_app(app, via, env=receiver.env("http/protobuf"))
    result.assert_clean(expected_returncode=3)
    assert [s.name for s in receiver.wait_for(1, signal="spans", timeout=30)] == ["before-exit"]


def test_already_patched_process_is_not_patched_again(tmp_path: Path, receiver) -> None:
    """``python -m gevent.monkey app.py`` under opentelemetry-instrument: gevent
    patches first (upstream's switch too), the distro leaves it alone."""
    app = write_app(
        tmp_path,
        """
        from otel_gevent_distro.startup.sequence import bootstrap_result
        r = bootstrap_result().patch
        print(r.patched_by_distro, r.already_patched)
        """,
    )
    env = {
        **receiver.env("http/protobuf"),
        "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH": "patch_all",
        "OTEL_PYTHON_GEVENT_PATCH_EXCLUDE": "dns",
    }
    result = run_app(app, "instrument", env=env)
    result.assert_clean()
    assert result.stdout.split() == ["False", "True"]
    [warning] = result.warnings()
    assert "OTEL_PYTHON_GEVENT_PATCH_EXCLUDE=dns has no effect" in warning


def test_sitecustomize_keeps_exclusions_despite_upstream_switch(tmp_path: Path, receiver) -> None:
    app = write_app(
        tmp_path,
        """
        import gevent.monkey
        print(gevent.monkey.is_module_patched("subprocess"), gevent.monkey.is_module_patched("socket"))
        """,
    )
    env = {
        **receiver.env("http/protobuf"),
        "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH": "patch_all",
        "OTEL_PYTHON_GEVENT_PATCH_EXCLUDE": "os,signal,subprocess",
    }
    result = run_app(app, "sitecustomize", env=env)
    result.assert_clean()
    assert result.stdout.split() == ["False", "True"]
    assert "Patching more than once" not in result.stderr


@pytest.mark.parametrize("via", PATHS)
def test_gevent_health_starts_with_the_sdk(tmp_path: Path, receiver, via: str) -> None:
    app = write_app(
        tmp_path,
        """
        import gevent
        for _ in range(10):
            gevent.sleep(0.1)
        """,
    )
    result = run_app(app, via, env={**receiver.env("http/protobuf"), "OTEL_PYTHON_GEVENT_HEALTH_INTERVAL": "0.05"})
    result.assert_clean()
    names = {m.name for m in receiver.wait_for(lambda m: m.name == "gevent.loop.lag", signal="metrics", timeout=30)}
    assert names == {"gevent.loop.lag"}
    receiver.clear()
    off = run_app(app, via, env={**receiver.env("http/protobuf"), "OTEL_PYTHON_GEVENT_HEALTH": "false"})
    off.assert_clean()
    assert receiver.metrics() == [] or not [m for m in receiver.metrics() if m.name.startswith("gevent.")]


@pytest.mark.parametrize("via", PATHS)
def test_a_process_that_emits_nothing_sends_nothing(tmp_path: Path, receiver, via: str) -> None:
    """Every Python program started with the sitecustomize folder (pip, manage.py...)
    starts telemetry; one that emits nothing must not wait on a collector at exit."""
    result = run_app(write_app(tmp_path, "print('quiet')\n"), via, env=receiver.env("http/protobuf"))
    result.assert_clean()
    assert receiver.requests == {signal: {"http": 0, "grpc": 0} for signal in ("spans", "metrics", "logs")}


def test_configurator_selected_beside_opentelemetry_distro_exports_over_http(tmp_path: Path, receiver) -> None:
    """``opentelemetry-distro``'s distro runs first and sets its own defaults
    (OTLP/gRPC); the gevent configurator then applies the distro's defaults,
    which the user did not override: the span arrives over OTLP/HTTP."""
    app = write_app(
        tmp_path,
        """
        from opentelemetry import trace
        with trace.get_tracer("t").start_as_current_span("beside-opentelemetry-distro"):
            pass
        """,
    )
    env = {
        "OTEL_PYTHON_DISTRO": "distro",
        "OTEL_PYTHON_CONFIGURATOR": "gevent",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.http_endpoint,
    }
    result = run_app(app, "instrument", env=env)
    result.assert_clean()
    assert [s.name for s in receiver.wait_for(1, signal="spans", timeout=30)] == ["beside-opentelemetry-distro"]
    assert receiver.requests["spans"] == {"http": 1, "grpc": 0}


def test_configurator_beside_opentelemetry_distro_keeps_the_users_protocol(tmp_path: Path, receiver) -> None:
    app = write_app(
        tmp_path,
        """
        from opentelemetry import trace
        with trace.get_tracer("t").start_as_current_span("users-grpc"):
            pass
        """,
    )
    env = {**receiver.env("grpc"), "OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "gevent"}
    result = run_app(app, "instrument", env=env)
    result.assert_clean()
    assert [s.name for s in receiver.wait_for(1, signal="spans", timeout=30)] == ["users-grpc"]
    assert receiver.requests["spans"]["http"] == 0


@pytest.mark.parametrize("via", PATHS)
def test_the_programs_folder_is_importable_while_start_up_runs(tmp_path: Path, receiver, via: str) -> None:
    """What start-up imports (here a preload; Django's instrumentation reads the
    settings module) finds the program's modules, and the program gets the
    ``sys.path`` that ``opentelemetry-instrument`` gives it."""
    (tmp_path / "startup_probe.py").write_text("import os, sys\nSEEN = os.getcwd() in sys.path\n")
    app = write_app(
        tmp_path,
        """
        import json, os, sys
        import startup_probe
        from otel_gevent_distro.startup.sequence import bootstrap_result
        launcher = os.path.dirname(os.path.abspath(sys.modules["sitecustomize"].__file__))
        here = os.getcwd()
        print(json.dumps({
            "preloaded": list(bootstrap_result().preload.imported),
            "seen_during_start_up": startup_probe.SEEN,
            "path_head": ["<launcher>" if p == launcher else "<here>" if p == here else "other" for p in sys.path[:3]],
        }))
        """,
    )
    env = {**receiver.env("http/protobuf"), "OTEL_PYTHON_GEVENT_PRELOAD": "startup_probe"}
    result = run_app(app, via, env=env)
    result.assert_clean()
    assert json.loads(result.stdout) == {
        "preloaded": ["magic", "startup_probe"],
        "seen_during_start_up": True,
        "path_head": ["<here>", "<launcher>", "<here>"],
    }
