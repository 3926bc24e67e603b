"""Turn what the doctor saw into findings, each with what to do about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PROBLEM = "problem"
WARNING = "warning"
OK = "ok"


@dataclass(frozen=True)
class Finding:
    severity: str
    code: str
    message: str
    advice: str = ""


def _version_tuple(text: str | None) -> tuple[int, ...]:
    parts = []
    for piece in (text or "0").split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def check_selection(env: dict[str, Any], via: str) -> list[Finding]:
    selected = env["selection"]
    findings = []
    if via == "instrument" and selected["distro"] != "gevent":
        findings.append(
            Finding(
                PROBLEM,
                "distro-not-selected",
                f"auto-instrumentation would run distro {selected['distro']!r} ({selected['distro_why']}).",
                "set OTEL_PYTHON_DISTRO=gevent",
            )
        )
    if selected["configurator"] != "gevent":
        findings.append(
            Finding(
                PROBLEM,
                "configurator-not-selected",
                f"configurator {selected['configurator']!r} would build the SDK ({selected['configurator_why']}); "
                "its stock processors restart threads in at-fork hooks.",
                "unset OTEL_PYTHON_CONFIGURATOR or set it to gevent",
            )
        )
    return findings


def check_versions(env: dict[str, Any], probe: dict[str, Any]) -> list[Finding]:
    found = env["versions"]
    if found.get("gevent") is None:
        return [Finding(PROBLEM, "gevent-missing", "gevent is not installed.", "pip install gevent")]
    findings = []
    stock = any(name.startswith("opentelemetry.sdk.") for name in probe.get("sdk", {}).get("span_processors", []))
    if stock and _version_tuple(found["gevent"]) < (25, 8):
        findings.append(
            Finding(
                PROBLEM,
                "fork-assertion",
                f"gevent {found['gevent']} with the SDK's stock batch processors prints "
                "'AssertionError: (None, <callback ...>)' in every forked or subprocess child.",
                "let the gevent configurator build the SDK (its processors never start workers in at-fork hooks)",
            )
        )
    if _version_tuple(found["gevent"]) < (24, 10) and _version_tuple(found.get("greenlet")) >= (3, 5, 1):
        findings.append(
            Finding(
                WARNING,
                "old-gevent-new-greenlet",
                f"gevent {found['gevent']} with greenlet {found['greenlet']} prints "
                "'RuntimeError: greenlet is being finalized' when patched processes exit.",
                "pip install 'greenlet<=3.5.0', or a newer gevent",
            )
        )
    return findings


def check_probe(env: dict[str, Any], probe: dict[str, Any], probe_log: list[str]) -> list[Finding]:
    if "error" in probe:
        return [Finding(PROBLEM, "probe-failed", f"start-up could not be checked: {probe['error']}")]
    findings = [Finding(PROBLEM, "start-up-log", line) for line in probe_log]
    patching = probe.get("patching", {})
    if not patching.get("patched_modules"):
        if env["options"]["values"]["patch"] == "none":
            findings.append(
                Finding(WARNING, "not-patched", "gevent is not patched at start-up (OTEL_PYTHON_GEVENT_PATCH=none).")
            )
        else:
            findings.append(Finding(PROBLEM, "not-patched", "gevent did not patch the standard library at start-up."))
    if patching.get("sdk_imported_before_patch"):
        findings.append(
            Finding(PROBLEM, "late-patch", "the OpenTelemetry SDK was imported before gevent patched.", "patch earlier")
        )
    protocol = (env["options"]["standard"].get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol == "grpc" and not probe.get("integrations", {}).get("grpc"):
        findings.append(
            Finding(
                PROBLEM,
                "grpc-blocks-hub",
                "OTLP/gRPC is used but gRPC's gevent mode is off: a slow collector freezes every greenlet.",
                "use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or remove grpc from "
                "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS",
            )
        )
    if not probe.get("configurator_ran"):
        findings.append(Finding(PROBLEM, "configurator-did-not-run", "the gevent configurator did not build the SDK."))
    return findings


def diagnose(env: dict[str, Any], probe: dict[str, Any], probe_log: list[str], via: str) -> list[Finding]:
    findings = check_selection(env, via) + check_versions(env, probe) + check_probe(env, probe, probe_log)
    return findings or [Finding(OK, "healthy", "no problem found.")]
