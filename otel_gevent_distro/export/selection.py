"""Check the exporters the environment asks for before the SDK is built.

The SDK raises on an unknown exporter name or OTLP protocol, and
auto-instrumentation then prints a traceback and builds nothing. Here each
``OTEL_{TRACES,METRICS,LOGS}_EXPORTER`` entry is resolved the way the SDK
resolves it (``otlp`` by protocol) and looked up among the installed entry
points; an entry that cannot load gives one warning naming the variable and
the fix, and is dropped so the other signals still export.

Spans, metrics and log records sent over OTLP/HTTP (``otlp`` with ``http/protobuf``, or
``otlp_proto_http``) are given to the distro's own exporter
(:mod:`otel_gevent_distro.export.otlp_http`, entry point
:data:`DISTRO_OTLP_HTTP`) unless ``OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER=upstream``
or something only upstream's ``requests`` session can use is configured: a
credential provider, or a proxy (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``
not bypassed by ``NO_PROXY``) for the signal's endpoint.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import MutableMapping
from importlib.metadata import entry_points

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.settings import Settings, get_settings, load_settings

SIGNALS = ("traces", "metrics", "logs")
PROTOCOLS = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}
#: What the SDK uses for ``otlp`` when no protocol variable is set.
SDK_DEFAULT_PROTOCOL = "grpc"
_OTLP_NAMES = ("otlp", "otlp_proto_grpc", "otlp_proto_http")
#: The entry point of the distro's OTLP/HTTP exporter, for these signals.
DISTRO_OTLP_HTTP = "gevent_otlp_proto_http"
DISTRO_OTLP_HTTP_SIGNALS = ("traces", "metrics", "logs")
_CREDENTIAL_PROVIDER = "OTEL_PYTHON_EXPORTER_OTLP_HTTP_{}CREDENTIAL_PROVIDER"


def _protocol(signal: str, env: MutableMapping[str, str]) -> str:
    """The OTLP protocol of ``signal``, chosen as the SDK chooses it.

    The signal's own variable when it is non-empty, else the general one;
    neither set means gRPC (the SDK's default, not the distro's: the distro's
    default is set in the environment before this runs). An invalid value is
    replaced, in the variable the SDK would read, by ``http/protobuf``.
    """
    variable = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    if not env.get(variable):
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
    if not env.get(variable):
        return SDK_DEFAULT_PROTOCOL
    value = env[variable].strip()
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


def _credential_provider(signal: str, env: MutableMapping[str, str]) -> str | None:
    for variable in (_CREDENTIAL_PROVIDER.format(""), _CREDENTIAL_PROVIDER.format(f"{signal.upper()}_")):
        if env.get(variable, "").strip():
            return variable
    return None


def _proxy(signal: str, env: MutableMapping[str, str]) -> str | None:
    from otel_gevent_distro.export.otlp_http import LOGS, METRICS, TRACES, endpoint_url, proxy_variable

    kind = {"traces": TRACES, "metrics": METRICS, "logs": LOGS}[signal]
    return proxy_variable(endpoint_url(kind, env), env)


def _distro_exporter_ready(signal: str) -> bool:
    if not _installed(signal, DISTRO_OTLP_HTTP):
        return False
    if signal == "metrics":  # upstream's metrics encoder comes with the [otlp] extra
        try:
            return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.common") is not None
        except ImportError:  # not even the opentelemetry.exporter namespace is installed
            return False
    from otel_gevent_distro.export.otlp_http import encoders_available

    return encoders_available()


def _resolve(signal: str, name: str, env: MutableMapping[str, str], settings: Settings) -> str:
    """The entry point name that will serve ``name`` for ``signal``."""
    resolved = PROTOCOLS[_protocol(signal, env)] if name == "otlp" else name
    if resolved != "otlp_proto_http" or signal not in DISTRO_OTLP_HTTP_SIGNALS:
        return resolved
    if settings.otlp_http_exporter != "distro":
        return resolved
    needs_upstream = _credential_provider(signal, env) or _proxy(signal, env)
    if needs_upstream:
        logger.info(
            "%s%s is set: %s go through upstream's OTLP/HTTP exporter, which can use it.",
            PREFIX,
            needs_upstream,
            signal,
        )
        return resolved
    return DISTRO_OTLP_HTTP if _distro_exporter_ready(signal) else resolved


def check_exporters(env: MutableMapping[str, str] | None = None) -> dict[str, list[str]]:
    """Drop every requested exporter that cannot load; return signal -> kept names.

    OTLP/HTTP spans and log records are rewritten to :data:`DISTRO_OTLP_HTTP`
    when the distro's exporter serves them.
    """
    environ = os.environ if env is None else env
    settings = get_settings() if env is None else load_settings(env)
    kept: dict[str, list[str]] = {}
    for signal in SIGNALS:
        variable = f"OTEL_{signal.upper()}_EXPORTER"
        names = [n.strip() for n in environ.get(variable, "").split(",") if n.strip()]
        if not names or [n.lower() for n in names] == ["none"]:
            kept[signal] = []
            continue
        good = []
        for name in names:
            resolved = _resolve(signal, name, environ, settings)
            if _installed(signal, resolved):
                good.append(resolved if resolved == DISTRO_OTLP_HTTP else name)
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
