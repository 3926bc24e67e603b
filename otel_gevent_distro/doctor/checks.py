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
    """Which distro and configurator run, and whether that rests on the order of installed entry points."""
    selected = env["selection"]
    standard = env["options"]["standard"]
    distro_unset = standard.get("OTEL_PYTHON_DISTRO") is None
    configurator_unset = standard.get("OTEL_PYTHON_CONFIGURATOR") is None
    if via == "instrument" and selected["distro"] != "gevent":
        if selected["configurator"] != "gevent" and configurator_unset:
            consequence = (
                f" It also picks the first configurator installed ({selected['configurator']!r}), so gevent is not "
                "patched before OpenTelemetry starts and the SDK's stock processors restart threads in at-fork hooks."
            )
        elif selected["configurator"] == "gevent":
            consequence = (
                " The gevent configurator still builds the SDK, but only after that distro imported it: "
                "gevent patches too late."
            )
        else:
            consequence = ""
        return [
            Finding(
                PROBLEM,
                "distro-not-selected",
                f"auto-instrumentation would run distro {selected['distro']!r} ({selected['distro_why']})."
                + consequence,
                "set OTEL_PYTHON_DISTRO=gevent",
            )
        ]
    findings = []
    if via == "instrument" and distro_unset and len(selected["distros_installed"]) > 1:
        findings.append(
            Finding(
                WARNING,
                "distro-by-directory-order",
                "OTEL_PYTHON_DISTRO is unset and several distros are installed "
                f"({', '.join(selected['distros_installed'])}): the gevent distro runs only because its entry point "
                "is found first, which depends on the order of files in site-packages.",
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
                "set OTEL_PYTHON_CONFIGURATOR=gevent, or unset it"
                if not configurator_unset
                else "set OTEL_PYTHON_CONFIGURATOR=gevent",
            )
        )
    return findings


def check_launch_path(env: dict[str, Any], via: str) -> list[Finding]:
    """The sitecustomize folder: on PYTHONPATH, and first there."""
    folder = env.get("sitecustomize")
    if via != "sitecustomize" or not folder:
        return []
    if not folder["on_pythonpath"]:
        return [
            Finding(
                PROBLEM,
                "sitecustomize-not-on-pythonpath",
                f"the launch path is the sitecustomize folder, but {folder['path']} is not on PYTHONPATH: "
                "a program started here runs without the distro.",
                'export PYTHONPATH="$(otel-gevent-distro sitecustomize-path)${PYTHONPATH:+:$PYTHONPATH}"',
            )
        ]
    if folder["shadowed_by"]:
        return [
            Finding(
                PROBLEM,
                "sitecustomize-shadowed",
                f"{folder['shadowed_by']} comes before the distro's folder on PYTHONPATH and has its own "
                "sitecustomize.py: Python runs only the first one found.",
                "put the distro's folder first on PYTHONPATH (the distro runs the next sitecustomize itself)",
            )
        ]
    return []


def check_versions(env: dict[str, Any], probe: dict[str, Any]) -> list[Finding]:
    found = env["versions"]
    if found.get("gevent") is None:
        return [Finding(PROBLEM, "gevent-missing", "gevent is not installed.", "pip install gevent")]
    findings = []
    stock = any(name.startswith("opentelemetry.sdk.") for name in probe.get("sdk", {}).get("span_processors") or [])
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
    misses = probe.get("upstream_misses")
    misses = misses if isinstance(misses, list) else []
    findings = [
        Finding(
            PROBLEM,
            "upstream-changed",
            line,
            "pin the OpenTelemetry SDK or gevent to a version listed as tested in docs/design.md, and report it",
        )
        for line in misses
    ]
    preload = probe.get("preload", {})
    named = env["options"]["values"].get("preload", [])
    missing = [m for m in (preload.get("missing", []) if isinstance(preload, dict) else []) if m in named]
    findings += [
        Finding(
            WARNING,
            "preload-missing",
            f"OTEL_PYTHON_GEVENT_PRELOAD names {module!r}, which is not installed here: nothing is preloaded for it.",
            "install it, or remove it from OTEL_PYTHON_GEVENT_PRELOAD",
        )
        for module in missing
    ]
    findings += [
        Finding(
            PROBLEM,
            "start-up-log",
            line,
            "fix the option the line names (README, Options), or the library it names",
        )
        for line in probe_log
        if not any(miss in line for miss in misses)
        and not any(f"PRELOAD names {module}," in line for module in missing)
    ]
    patching = probe.get("patching", {})
    if not patching.get("patched_modules"):
        if env["options"]["values"]["patch"] == "none":
            findings.append(
                Finding(WARNING, "not-patched", "gevent is not patched at start-up (OTEL_PYTHON_GEVENT_PATCH=none).")
            )
        else:
            findings.append(
                Finding(
                    PROBLEM,
                    "not-patched",
                    "gevent did not patch the standard library at start-up.",
                    "check the lines above; OTEL_PYTHON_GEVENT_PATCH=all is the default",
                )
            )
    if patching.get("sdk_imported_before_patch"):
        findings.append(
            Finding(
                PROBLEM,
                "late-patch",
                "the OpenTelemetry SDK was imported before gevent patched.",
                "start through opentelemetry-instrument or the sitecustomize folder, not by importing the SDK first",
            )
        )
    protocol = (env["options"]["standard"].get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf").strip()
    if protocol == "grpc" and probe.get("integrations", {}).get("grpc") != "on":
        findings.append(
            Finding(
                PROBLEM,
                "grpc-blocks-hub",
                "OTLP/gRPC is used but gRPC's gevent mode is off: a slow collector freezes every greenlet.",
                "use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf, or remove grpc from "
                "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS",
            )
        )
    if protocol == "grpc":
        findings.append(
            Finding(
                WARNING,
                "grpc-fork-exit",
                "OTLP/gRPC: a forked process that leaves through the interpreter's normal exit (gunicorn's "
                "workers, bare os.fork() children) hangs in gRPC's exit code until it is killed; gunicorn then "
                "stops only after its graceful timeout.",
                "use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (the default)",
            )
        )
    if not probe.get("configurator_ran"):
        findings.append(
            Finding(
                PROBLEM,
                "configurator-did-not-run",
                "the gevent configurator did not build the SDK.",
                "set OTEL_PYTHON_CONFIGURATOR=gevent (or leave it unset with OTEL_PYTHON_DISTRO=gevent)",
            )
        )
    return findings


def diagnose(env: dict[str, Any], probe: dict[str, Any], probe_log: list[str], via: str) -> list[Finding]:
    """The findings, a cause before its consequences: a wrong launch path or distro hides what follows from it."""
    selection = check_selection(env, via)
    configurator_named = env["options"]["standard"].get("OTEL_PYTHON_CONFIGURATOR") is not None
    cause = check_launch_path(env, via)
    if not cause and any(f.code == "distro-not-selected" for f in selection):
        # A configurator the user named is a cause of its own; the rest follows from the distro.
        cause = list(selection)
        if configurator_named and env["selection"]["configurator"] != "gevent":
            cause += [f for f in check_selection(env, "sitecustomize") if f.code == "configurator-not-selected"]
    if cause:
        return cause + check_versions(env, probe)
    findings = selection + check_versions(env, probe) + check_probe(env, probe, probe_log)
    return findings or [Finding(OK, "healthy", "no problem found.")]
