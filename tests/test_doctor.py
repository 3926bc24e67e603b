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
    assert probe["sdk"]["span_processors"] == ["otel_gevent_distro.span_processor.GeventBatchSpanProcessor"]
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
    done = subprocess.run(
        [str(BIN / "otel-gevent-distro"), "doctor"], env=full, capture_output=True, text=True, timeout=180, check=False
    )
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
    assert problems["configurator-alone"] == {"distro-not-selected", "late-patch"}
    assert probes["configurator-alone"]["patching"].pop("sdk_imported_before_patch") is True
    assert probes["instrument"]["sdk"]["span_exporters"] == ["otel_gevent_distro.export.otlp_http.OtlpHttpSpanExporter"]
    assert probes["instrument"]["preload"]["imported"] == ["magic", "json"]
    assert probes["instrument"]["patching"].pop("sdk_imported_before_patch") is False
    assert probes["sitecustomize"]["patching"].pop("sdk_imported_before_patch") is False
    assert probes["sitecustomize"] == probes["instrument"]
    assert probes["configurator-alone"] == probes["instrument"]
