"""Parse the distro's options once into a frozen :class:`Settings`.

This is the only module that reads ``OTEL_PYTHON_GEVENT_*`` variables. A bad
value never raises: it gives one warning naming the variable, the value and
what is accepted, and the default is used instead.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.environment_variables import (
    OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS,
    OTEL_PYTHON_GEVENT_EXIT_TIMEOUT,
    OTEL_PYTHON_GEVENT_HEALTH,
    OTEL_PYTHON_GEVENT_HEALTH_INTERVAL,
    OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER,
    OTEL_PYTHON_GEVENT_PATCH,
    OTEL_PYTHON_GEVENT_PATCH_EXCLUDE,
    OTEL_PYTHON_GEVENT_PRELOAD,
    OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS,
)

PATCH_MODES = ("all", "none")
#: Whose exporter sends spans and log records over OTLP/HTTP.
OTLP_HTTP_EXPORTERS = ("distro", "upstream")

#: The boolean keyword arguments of ``gevent.monkey.patch_all`` that name a module.
PATCHABLE_MODULES = (
    "socket",
    "dns",
    "time",
    "select",
    "thread",
    "os",
    "ssl",
    "subprocess",
    "sys",
    "builtins",
    "signal",
    "queue",
    "contextvars",
)

#: The gevent integrations, in the order they are turned on; the one list of their names
#: (:mod:`otel_gevent_distro.startup.integrations` says how each is turned on).
INTEGRATIONS = ("grpc", "psycogreen")

_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Settings:
    """The distro's options, validated."""

    patch: str = "all"
    patch_exclude: frozenset[str] = frozenset()
    preload: tuple[str, ...] = ()
    preload_defaults: bool = True
    disabled_integrations: frozenset[str] = frozenset()
    health: bool = True
    health_interval: float = 1.0
    exit_timeout_millis: float = 5000.0
    otlp_http_exporter: str = "distro"
    #: Where each option came from: ``"environment"`` or ``"default"``.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)


def _warn(variable: str, value: str, accepted: str, consequence: str) -> None:
    logger.warning(
        "%s%s=%r is not valid (accepted: %s); %s.",
        PREFIX,
        variable,
        value,
        accepted,
        consequence,
    )


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_bool(variable: str, value: str | None, default: bool) -> bool:
    """``true``/``false`` in any case, as the SDK reads booleans."""
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    _warn(variable, value, "true, false", f"using {str(default).lower()}")
    return default


def parse_choice(variable: str, value: str | None, choices: tuple[str, ...], default: str) -> str:
    """One of ``choices``, case-insensitive."""
    if value is None or not value.strip():
        return default
    lowered = value.strip().lower()
    if lowered in choices:
        return lowered
    _warn(variable, value, ", ".join(choices), f"using {default}")
    return default


def parse_names(variable: str, value: str | None, known: tuple[str, ...]) -> frozenset[str]:
    """A comma list whose items must each be one of ``known``; others are dropped."""
    names = set()
    for item in _split(value or ""):
        if item.lower() in known:
            names.add(item.lower())
        else:
            _warn(variable, item, ", ".join(known), "ignoring that entry")
    return frozenset(names)


def parse_modules(variable: str, value: str | None) -> tuple[str, ...]:
    """A comma list of dotted module names, in order, without duplicates."""
    modules: list[str] = []
    for item in _split(value or ""):
        if not _MODULE_NAME.match(item):
            _warn(variable, item, "dotted Python module names", "ignoring that entry")
        elif item not in modules:
            modules.append(item)
    return tuple(modules)


def _float_or_nan(value: str) -> float:
    """``value`` as a float; NaN (which fails every range check) when it is not a number."""
    try:
        return float(value.strip())
    except ValueError:
        return float("nan")


def parse_seconds(variable: str, value: str | None, default: float, minimum: float) -> float:
    """A number of seconds, at least ``minimum``."""
    if value is None or not value.strip():
        return default
    seconds = _float_or_nan(value)
    if not seconds >= minimum or seconds == float("inf"):
        _warn(variable, value, f"a finite number of seconds >= {minimum:g}", f"using {default:g}")
        return default
    return seconds


def parse_millis(variable: str, value: str | None, default: float, maximum: float) -> float:
    """A number of milliseconds from 0 to ``maximum``; larger values are clamped to ``maximum``."""
    if value is None or not value.strip():
        return default
    millis = _float_or_nan(value)
    if not millis >= 0:
        _warn(variable, value, f"milliseconds from 0 to {maximum:g}", f"using {default:g}")
        return default
    if millis > maximum:
        _warn(variable, value, f"milliseconds from 0 to {maximum:g}", f"using {maximum:g}")
        return maximum
    return millis


def _consistent_exclusions(excluded: frozenset[str]) -> frozenset[str]:
    """Refuse exclusions that make gevent hang or misbehave.

    With ``os`` patched, gevent's ``os.waitpid`` only sees children forked
    through gevent, so an unpatched ``subprocess`` waits forever on every call
    (``import magic`` included). With ``thread`` unpatched, a patched
    ``queue`` hangs every ``concurrent.futures`` pool, so ``queue`` follows.
    """
    if "thread" in excluded and "queue" not in excluded:
        # gevent's queue.SimpleQueue cannot be shared with real threads:
        # concurrent.futures (the SDK's resource detection) dies with LoopExit.
        logger.info("%sthread is excluded from patching, so queue is excluded too.", PREFIX)
        excluded = excluded | {"queue"}
    if "subprocess" in excluded and "os" not in excluded:
        logger.warning(
            "%s%s=subprocess without os makes every subprocess call hang (gevent's patched os.waitpid "
            "never sees the child); subprocess stays patched. Exclude os,signal,subprocess together instead.",
            PREFIX,
            OTEL_PYTHON_GEVENT_PATCH_EXCLUDE,
        )
        return excluded - {"subprocess"}
    return excluded


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every ``OTEL_PYTHON_GEVENT_*`` option."""
    env = os.environ if environ is None else environ
    variables = (
        OTEL_PYTHON_GEVENT_PATCH,
        OTEL_PYTHON_GEVENT_PATCH_EXCLUDE,
        OTEL_PYTHON_GEVENT_PRELOAD,
        OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS,
        OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS,
        OTEL_PYTHON_GEVENT_HEALTH,
        OTEL_PYTHON_GEVENT_HEALTH_INTERVAL,
        OTEL_PYTHON_GEVENT_EXIT_TIMEOUT,
        OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER,
    )
    sources = {name: ("environment" if env.get(name, "").strip() else "default") for name in variables}
    return Settings(
        patch=parse_choice(OTEL_PYTHON_GEVENT_PATCH, env.get(OTEL_PYTHON_GEVENT_PATCH), PATCH_MODES, "all"),
        patch_exclude=_consistent_exclusions(
            parse_names(OTEL_PYTHON_GEVENT_PATCH_EXCLUDE, env.get(OTEL_PYTHON_GEVENT_PATCH_EXCLUDE), PATCHABLE_MODULES)
        ),
        preload=parse_modules(OTEL_PYTHON_GEVENT_PRELOAD, env.get(OTEL_PYTHON_GEVENT_PRELOAD)),
        preload_defaults=parse_bool(
            OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS, env.get(OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS), True
        ),
        disabled_integrations=parse_names(
            OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS,
            env.get(OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS),
            INTEGRATIONS,
        ),
        health=parse_bool(OTEL_PYTHON_GEVENT_HEALTH, env.get(OTEL_PYTHON_GEVENT_HEALTH), True),
        health_interval=parse_seconds(
            OTEL_PYTHON_GEVENT_HEALTH_INTERVAL, env.get(OTEL_PYTHON_GEVENT_HEALTH_INTERVAL), 1.0, 0.01
        ),
        exit_timeout_millis=parse_millis(
            OTEL_PYTHON_GEVENT_EXIT_TIMEOUT, env.get(OTEL_PYTHON_GEVENT_EXIT_TIMEOUT), 5000.0, 120_000.0
        ),
        otlp_http_exporter=parse_choice(
            OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER,
            env.get(OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER),
            OTLP_HTTP_EXPORTERS,
            "distro",
        ),
        sources=sources,
    )


_cached: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, parsed (and warned about) on first use only."""
    global _cached
    if _cached is None:
        _cached = load_settings()
    return _cached
