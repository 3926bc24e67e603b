"""Run the doctor: launch the probe like the application, diagnose, print, exit code."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from otel_gevent_distro.doctor.checks import PROBLEM, Finding, diagnose
from otel_gevent_distro.doctor.environment import read_environment

PROBE_TIMEOUT_S = 90


def detect_launch_path() -> str:
    """``sitecustomize`` when the distro's folder is on PYTHONPATH, else ``instrument``."""
    from otel_gevent_distro.doctor.environment import sitecustomize_folder

    return "sitecustomize" if sitecustomize_folder()["on_pythonpath"] else "instrument"


def _probe_command(via: str) -> list[str]:
    command = [sys.executable, "-m", "otel_gevent_distro.doctor.probe"]
    if via == "instrument":
        launcher = shutil.which("opentelemetry-instrument") or str(
            Path(sys.executable).parent / "opentelemetry-instrument"
        )
        command = [launcher, *command]
    return command


def run_probe(via: str) -> tuple[dict[str, Any], list[str]]:
    """Start a child like the application; return its report and the distro's log lines."""
    try:
        done = subprocess.run(_probe_command(via), capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}, []
    log = [line for line in done.stderr.splitlines() if line.startswith("otel-gevent-distro:")]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-3:])
        return {"error": f"probe exited with {done.returncode}: {tail}"}, log
    return json.loads(lines[-1]), log


def _render(env: dict[str, Any], probe: dict[str, Any], findings: list[Finding], via: str) -> str:
    selection = env["selection"]
    lines = [f"otel-gevent-distro doctor (launch path: {via})", "", "Versions:"]
    lines += [f"  {name}: {value or 'not installed'}" for name, value in env["versions"].items()]
    lines += ["", "Options:"]
    for name, source in env["options"]["sources"].items():
        values = env["options"]["values"]
        field = name.removeprefix("OTEL_PYTHON_GEVENT_").lower()
        # Fields may carry their unit (exit_timeout_millis for OTEL_PYTHON_GEVENT_EXIT_TIMEOUT).
        value = values.get(field, next((v for k, v in values.items() if k.startswith(f"{field}_")), ""))
        lines.append(f"  {name} = {value!r} ({source})")
    lines += [f"  {name} = {value!r}" for name, value in env["options"]["standard"].items() if value is not None]
    lines += [
        "",
        f"Distro: {selection['distro']} ({selection['distro_why']}); installed: {selection['distros_installed']}",
        f"Configurator: {selection['configurator']} ({selection['configurator_why']}); "
        f"installed: {selection['configurators_installed']}",
        f"Preload catalog installed: {env['catalog']}",
    ]
    if "error" not in probe:
        patching, sdk = probe.get("patching", {}), probe.get("sdk", {})
        lines += [
            f"Patched modules: {', '.join(patching.get('patched_modules', [])) or 'none'}",
            f"Preloaded: {probe.get('preload', {}).get('imported', [])}",
            f"Integrations: {probe.get('integrations', {})}",
            f"Span processors: {_listed(sdk.get('span_processors'))}",
            f"Span exporters: {_listed(sdk.get('span_exporters'))}",
            f"Log record processors: {_listed(sdk.get('log_processors'))}",
            f"Metric readers: {_listed(sdk.get('metric_readers'))}",
        ]
    lines += ["", "Findings:"]
    for finding in findings:
        advice = f"\n      -> {finding.advice}" if finding.advice else ""
        lines.append(f"  [{finding.severity}] {finding.code}: {finding.message}{advice}")
    return "\n".join(lines)


def _listed(names: Any) -> str:
    if names is None:
        return "not readable with this SDK"
    return ", ".join(names) if names else "none"


def run_doctor(as_json: bool = False, via: str = "auto") -> int:
    """Print the diagnosis; return 1 when a problem was found, else 0."""
    chosen = detect_launch_path() if via == "auto" else via
    env = read_environment(chosen)
    probe, log = run_probe(chosen)
    findings = diagnose(env, probe, log, chosen)
    if as_json:
        payload = {
            "launch_path": chosen,
            "environment": env,
            "probe": probe,
            "findings": [finding.__dict__ for finding in findings],
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(_render(env, probe, findings, chosen))
    return 1 if any(f.severity == PROBLEM for f in findings) else 0
