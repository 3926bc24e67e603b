"""Check the exporters the environment asks for before the SDK is built.

The SDK raises on an unknown exporter name or OTLP protocol, and
auto-instrumentation then prints a traceback and builds nothing. Here each
``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` entry is resolved the way the SDK
resolves it (``otlp`` by protocol) and looked up among the installed entry
points; an entry that cannot load gives one warning naming the variable and
the fix, and is dropped so the other signals still export.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from importlib.metadata import entry_points

from otel_gevent_distro._log import PREFIX, logger

SIGNALS = ("traces", "metrics", "logs")
PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
_OTLP_NAMES = ("otlp", "otlp_proto_grpc", "otlp_proto_http")


def _protocol(signal: str, env: MutableMapping[str, str]) -> str:
    variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    if not env.get(variable, "").strip():
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
    value = env.get(variable, "").strip() or "http/protobuf"
    if value not in PROTOCOLS:
        logger.warning(
            "%s%s=%r is not valid (accepted: %s); using http/protobuf.", PREFIX, variable, value, ", ".join(PROTOCOLS)
        )
        env[variable] = "http/protobuf"
        value = "http/protobuf"
    return value


def _installed(signal: str, name: str) -> bool:
    return any(True for _ in entry_points(group=f"opentelemetry_{signal}_exporter", name=name))


def _describe(signal: str, name: str, resolved: str) -> str:
    if name in _OTLP_NAMES:
        return f"the OTLP exporter ({resolved}) is not installed: pip install 'otel-gevent-distro[otlp]'"
    return f"no package provides the {signal} exporter {name!r}"


def check_exporters(env: MutableMapping[str, str] | None = None) -> dict[str, list[str]]:
    """Drop every requested exporter that cannot load; return signal -> kept names."""
    environ = os.environ if env is None else env
    kept: dict[str, list[str]] = {}
    for signal in SIGNALS:
        variable = f"OTEL_{signal.upper()}_EXPORTER"
        names = [n.strip() for n in environ.get(variable, "").split(",") if n.strip()]
        if not names or [n.lower() for n in names] == ["none"]:
            kept[signal] = []
            continue
        good = []
        for name in names:
            resolved = PROTOCOLS[_protocol(signal, environ)] if name == "otlp" else name
            if _installed(signal, resolved):
                good.append(name)
            else:
                logger.warning(
                    "%s%s=%s: %s; %s are not exported by it.",
                    PREFIX,
                    variable,
                    name,
                    _describe(signal, name, resolved),
                    signal,
                )
        environ[variable] = ",".join(good) or "none"
        kept[signal] = good
    return kept
