"""The distro's environment defaults, the same in every launch path.

A default is applied only where the *user* set nothing. What the user set is
the environment before any distro's ``_configure`` ran: the distro records it
(:func:`remember_user_environment`) before it sets anything. When this
package's configurator is selected beside another distro (for example
``OTEL_PYTHON_DISTRO=distro OTEL_PYTHON_CONFIGURATOR=gevent``), that distro
ran first and may have set its own defaults (``opentelemetry-distro`` sets
``OTEL_EXPORTER_OTLP_PROTOCOL=grpc``); the user's environment is then the one
the process was started with, read from ``/proc/self/environ`` where the
system has it. Values another distro chose replace none of the user's and
are replaced by these defaults.

This module imports nothing of OpenTelemetry.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from otel_gevent_distro._log import PREFIX, logger

#: Environment defaults, applied only where the user set nothing.
DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    # OTLP/HTTP rides on gevent's patched sockets and never freezes the hub;
    # gRPC needs its gevent mode, which the distro also turns on when used.
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_PYTHON_CONFIGURATOR": "gevent",
}

_PROCESS_ENVIRONMENT = "/proc/self/environ"

_user_environment: dict[str, str] | None = None


def remember_user_environment() -> None:
    """Record the environment as the user gave it; the first call in a process wins.

    Call it before anything of start-up sets a variable.
    """
    global _user_environment
    if _user_environment is None:
        _user_environment = dict(os.environ)


def _environment_at_start() -> dict[str, str] | None:
    """The environment this process was started with, where the system keeps it."""
    try:
        with open(_PROCESS_ENVIRONMENT, "rb") as file:
            raw = file.read()
    except OSError:
        return None
    environment = {}
    for entry in raw.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name:
            environment[os.fsdecode(name)] = os.fsdecode(value)
    return environment


def user_environment() -> Mapping[str, str]:
    """The user's environment: as recorded, else as the process started, else as it is now."""
    if _user_environment is not None:
        return _user_environment
    at_start = _environment_at_start()
    return at_start if at_start is not None else os.environ


def apply_defaults() -> None:
    """Set each of :data:`DEFAULTS` that the user did not set."""
    user = user_environment()
    for name, value in DEFAULTS.items():
        if user.get(name, "").strip():
            continue
        current = os.environ.get(name, "").strip()
        if current and current != value:
            logger.debug("%s%s=%s was set during start-up, not by the user; using %s.", PREFIX, name, current, value)
        os.environ[name] = value
