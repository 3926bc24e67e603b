"""``otel-gevent-distro doctor``: a healthy set-up and each problem it reports."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.launch import BIN, clean_environment, sitecustomize_folder


def doctor(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    full = clean_environment()
    full.update(env)
    done = subprocess.run(
        [str(BIN / "otel-gevent-distro"), "doctor", "--json", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def doctor_text(full_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``otel-gevent-distro doctor`` in human-readable form, with exactly ``full_env``."""
    command = [str(BIN / "otel-gevent-distro"), "doctor"]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=180, check=False)


def codes(report: dict[str, Any]) -> set[str]:
    return {f["code"] for f in report["findings"] if f["severity"] == "problem"}


def test_healthy_instrument_setup() -> None:
    returncode, report = doctor({"OTEL_PYTHON_DISTRO": "gevent"})
    assert returncode == 0, report["findings"]
    assert report["launch_path"] == "instrument"
    probe = report["probe"]
    assert "threading" in probe["patching"]["patched_modules"]
    assert probe["patching"]["sdk_imported_before_patch"] is False
    assert probe["preload"]["imported"] == ["magic"]
    assert probe["configurator_ran"] is True
    assert probe["sdk"]["span_processors"] == ["otel_gevent_distro.pipeline.span_processor.GeventBatchSpanProcessor"]
    # Read where each SDK keeps them (1.40 and 1.45 differ for metric readers).
    assert probe["sdk"]["metric_readers"] == ["otel_gevent_distro.pipeline.metric_reader.GeventPeriodicMetricReader"]
    assert probe["sdk"]["log_processors"] == ["otel_gevent_distro.pipeline.log_processor.GeventBatchLogRecordProcessor"]
    assert probe["upstream_misses"] == []
    assert report["environment"]["selection"]["configurator"] == "gevent"
    assert report["environment"]["versions"]["gevent"]
    assert report["environment"]["options"]["sources"]["OTEL_PYTHON_GEVENT_PATCH"] == "default"


def test_healthy_sitecustomize_setup_is_detected() -> None:
    returncode, report = doctor({"PYTHONPATH": sitecustomize_folder(), "OTEL_PYTHON_GEVENT_PRELOAD": "json"})
    assert returncode == 0, report["findings"]
    assert report["launch_path"] == "sitecustomize"
    assert report["probe"]["preload"]["imported"] == ["magic", "json"]
    assert report["environment"]["options"]["sources"]["OTEL_PYTHON_GEVENT_PRELOAD"] == "environment"


def test_human_output_names_the_parts() -> None:
    full = {**clean_environment(), "OTEL_PYTHON_DISTRO": "gevent"}
    done = doctor_text(full)
    assert done.returncode == 0, done.stdout + done.stderr
    for part in ("Versions:", "Options:", "Distro: gevent", "Patched modules:", "Span processors:", "[ok] healthy"):
        assert part in done.stdout


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"OTEL_PYTHON_DISTRO": "distro"}, "distro-not-selected"),
        ({"OTEL_PYTHON_DISTRO": "no-such-distro"}, "distro-not-selected"),
        ({"OTEL_PYTHON_DISTRO": "gevent", "OTEL_PYTHON_CONFIGURATOR": "configurator"}, "configurator-not-selected"),
        (
            {
                "OTEL_PYTHON_DISTRO": "gevent",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS": "grpc",
            },
            "grpc-blocks-hub",
        ),
        ({"OTEL_PYTHON_DISTRO": "gevent", "OTEL_PYTHON_GEVENT_PATCH": "bogus"}, "start-up-log"),
    ],
)
def test_each_problem_is_reported_with_exit_code_1(env: dict[str, str], problem: str) -> None:
    returncode, report = doctor(env)
    assert returncode == 1
    assert problem in codes(report), report["findings"]
    assert all(f["message"] for f in report["findings"])


def test_patch_none_is_a_warning_not_a_problem() -> None:
    returncode, report = doctor({"OTEL_PYTHON_DISTRO": "gevent", "OTEL_PYTHON_GEVENT_PATCH": "none"})
    assert returncode == 0
    assert {f["code"] for f in report["findings"]} == {"not-patched"}


def test_gevent_that_cannot_import_is_reported(tmp_path: Path) -> None:
    shim = tmp_path / "gevent"
    shim.mkdir()
    (shim / "__init__.py").write_text("raise ImportError('hidden for this test')\n")
    returncode, report = doctor({"OTEL_PYTHON_DISTRO": "gevent", "PYTHONPATH": str(tmp_path)})
    assert returncode == 1
    assert {"not-patched", "start-up-log"} <= codes(report)


def test_old_gevent_with_stock_processors_is_flagged() -> None:
    import gevent

    major_minor = tuple(int(p) for p in gevent.__version__.split(".")[:2])
    returncode, report = doctor({"OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "configurator"})
    assert returncode == 1
    if major_minor < (25, 8):
        assert "fork-assertion" in codes(report)
    else:
        assert "fork-assertion" not in codes(report)
    assert "configurator-not-selected" in codes(report)


def test_every_launch_path_starts_the_same() -> None:
    """The same variables through ``opentelemetry-instrument``, the sitecustomize
    folder, and the configurator selected alone beside ``opentelemetry-distro``:
    the probe, started like the application, finds the same start-up."""
    same = {"OTEL_PYTHON_GEVENT_PRELOAD": "json", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}
    paths = {
        "instrument": ({**same, "OTEL_PYTHON_DISTRO": "gevent"}, "instrument"),
        "sitecustomize": ({**same, "PYTHONPATH": sitecustomize_folder()}, "sitecustomize"),
        "configurator-alone": (
            {**same, "OTEL_PYTHON_DISTRO": "distro", "OTEL_PYTHON_CONFIGURATOR": "gevent"},
            "instrument",
        ),
    }
    probes, problems = {}, {}
    for name, (env, via) in paths.items():
        _, report = doctor(env, "--via", via)
        probes[name], problems[name] = report["probe"], codes(report)
    assert problems["instrument"] == problems["sitecustomize"] == set()
    # opentelemetry-distro's distro imports the SDK's modules before any code of
    # this package runs: patching comes after that import there, by construction.
    # The doctor names the cause (the other distro) with the consequence in its message.
    assert problems["configurator-alone"] == {"distro-not-selected"}
    assert probes["configurator-alone"]["patching"].pop("sdk_imported_before_patch") is True
    assert probes["instrument"]["sdk"]["span_exporters"] == ["otel_gevent_distro.export.otlp_http.OtlpHttpSpanExporter"]
    assert probes["instrument"]["preload"]["imported"] == ["magic", "json"]
    assert probes["instrument"]["patching"].pop("sdk_imported_before_patch") is False
    assert probes["sitecustomize"]["patching"].pop("sdk_imported_before_patch") is False
    assert probes["sitecustomize"] == probes["instrument"]
    assert probes["configurator-alone"] == probes["instrument"]


# -- the causes, not their symptoms ---------------------------------------------------


def _entry_points_first(tmp_path: Path, distro: str, target: str) -> str:
    """A folder for the front of PYTHONPATH whose distribution declares ``distro`` first."""
    info = tmp_path / "aaa_first-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: aaa-first\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[opentelemetry_distro]\n{distro} = {target}\n")
    return str(tmp_path)


def test_another_distro_found_first_is_one_problem_with_its_fix(tmp_path: Path) -> None:
    folder = _entry_points_first(tmp_path, "distro", "opentelemetry.distro:OpenTelemetryDistro")
    returncode, report = doctor({"PYTHONPATH": folder}, "--via", "instrument")
    assert returncode == 1
    (finding,) = report["findings"]
    assert finding["code"] == "distro-not-selected"
    assert finding["advice"] == "set OTEL_PYTHON_DISTRO=gevent"
    assert "first one installed" in finding["message"]


def test_the_gevent_distro_chosen_by_directory_order_is_a_warning(tmp_path: Path) -> None:
    folder = _entry_points_first(tmp_path, "gevent", "otel_gevent_distro.startup.distro:GeventDistro")
    returncode, report = doctor({"PYTHONPATH": folder}, "--via", "instrument")
    assert returncode == 0, report["findings"]
    warnings = [f for f in report["findings"] if f["severity"] == "warning"]
    assert [f["code"] for f in warnings] == ["distro-by-directory-order"]
    assert warnings[0]["advice"] == "set OTEL_PYTHON_DISTRO=gevent"
    # Named, the choice no longer rests on the order.
    returncode, report = doctor({"PYTHONPATH": folder, "OTEL_PYTHON_DISTRO": "gevent"}, "--via", "instrument")
    assert returncode == 0
    assert [f["code"] for f in report["findings"]] == ["healthy"]


def test_every_problem_comes_with_advice(tmp_path: Path) -> None:
    cases = [
        {"OTEL_PYTHON_DISTRO": "distro"},
        {"OTEL_PYTHON_DISTRO": "gevent", "OTEL_PYTHON_CONFIGURATOR": "configurator"},
        {"OTEL_PYTHON_DISTRO": "gevent", "OTEL_PYTHON_GEVENT_PATCH": "bogus"},
    ]
    for env in cases:
        _, report = doctor(env)
        assert all(f["advice"] for f in report["findings"] if f["severity"] == "problem"), report["findings"]


def test_sitecustomize_path_without_the_folder_names_the_cause() -> None:
    returncode, report = doctor({"OTEL_PYTHON_DISTRO": "gevent"}, "--via", "sitecustomize")
    assert returncode == 1
    (finding,) = report["findings"]
    assert finding["code"] == "sitecustomize-not-on-pythonpath"
    assert "otel-gevent-distro sitecustomize-path" in finding["advice"]


def test_a_sitecustomize_earlier_on_the_path_is_reported(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text("")
    pythonpath = f"{tmp_path}:{sitecustomize_folder()}"
    returncode, report = doctor({"PYTHONPATH": pythonpath}, "--via", "sitecustomize")
    assert returncode == 1
    assert [f["code"] for f in report["findings"]] == ["sitecustomize-shadowed"]


def test_a_preload_module_that_is_not_installed_is_a_warning() -> None:
    returncode, report = doctor({"OTEL_PYTHON_DISTRO": "gevent", "OTEL_PYTHON_GEVENT_PRELOAD": "no_such_module_here"})
    assert returncode == 0, report["findings"]
    (finding,) = report["findings"]
    assert (finding["severity"], finding["code"]) == ("warning", "preload-missing")
    assert "no_such_module_here" in finding["message"]


def test_the_doctor_exports_nothing_through_the_sitecustomize_folder() -> None:
    # No collector listens: a doctor that started telemetry in its own process
    # (the folder is on its PYTHONPATH too) would export at exit and print the
    # failure; the probe leaves without exporting.
    full = {
        **clean_environment(),
        "PYTHONPATH": sitecustomize_folder(),
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_METRIC_EXPORT_INTERVAL": "50",
    }
    done = doctor_text(full)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[ok] healthy" in done.stdout
    assert done.stderr == ""


def test_otlp_grpc_is_a_warning_about_forked_children_at_exit() -> None:
    returncode, report = doctor({"OTEL_PYTHON_DISTRO": "gevent", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert returncode == 0, report["findings"]
    (finding,) = report["findings"]
    assert (finding["severity"], finding["code"]) == ("warning", "grpc-fork-exit")
    assert "http/protobuf" in finding["advice"]


def test_a_bad_option_is_one_line_and_shown_with_the_value_used() -> None:
    full = {**clean_environment(), "OTEL_PYTHON_DISTRO": "gevent", "OTEL_PYTHON_GEVENT_EXIT_TIMEOUT": "abc"}
    done = doctor_text(full)
    assert done.returncode == 1
    assert "OTEL_PYTHON_GEVENT_EXIT_TIMEOUT = 5000.0 (environment)" in done.stdout
    # Reported once, by the probe that starts like the application; not again by the doctor itself.
    assert (done.stdout + done.stderr).count("OTEL_PYTHON_GEVENT_EXIT_TIMEOUT='abc' is not valid") == 1
