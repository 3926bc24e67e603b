"""The options of the export pipelines, read from arguments and the environment.

Owns ``OTEL_BSP_*`` / ``OTEL_BLRP_*`` (batching of spans and log records)
and ``OTEL_METRIC_EXPORT_INTERVAL`` / ``_TIMEOUT``: arguments win over the
environment, which wins over the SDK's defaults. Bad arguments raise like
the SDK; a bad environment value is one warning and the SDK default, so a
typo in a deployment never stops the application.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from otel_gevent_distro._log import PREFIX, logger


@dataclass(frozen=True)
class BatchOptions:
    """The four batching options of a span or log record pipeline."""

    max_queue_size: int = 2048
    schedule_delay_millis: float = 5000
    max_export_batch_size: int = 512
    export_timeout_millis: float = 30000


@dataclass(frozen=True)
class BatchVariables:
    """The environment variable names of one signal's batching options."""

    max_queue_size: str
    schedule_delay: str
    max_export_batch_size: str
    export_timeout: str
    #: The SDK's default schedule delay differs per signal: 5000 ms for spans, 1000 ms for log records.
    default_schedule_delay_millis: float = 5000


#: Upper bounds of every numeric option: larger values are clamped with one warning,
#: so no value can overflow a timeout or a wait further down.
MAX_QUEUE_SIZE = 10_000_000
MAX_MILLIS = 86_400_000.0  # one day


@dataclass(frozen=True)
class MetricOptions:
    """The periodic metric reader's options."""

    export_interval_millis: float = 60000
    export_timeout_millis: float = 30000


def _invalid(name: str, raw: str, accepted: str, default: float) -> None:
    logger.warning(
        "%s%s=%r is not valid (accepted: %s); using the SDK default %s.", PREFIX, name, raw, accepted, default
    )


def env_number(
    environ: Mapping[str, str],
    name: str,
    default: float,
    parse: Callable[[str], float] = int,
    maximum: float = MAX_MILLIS,
) -> float:
    """A positive number from ``environ``; unset or empty gives ``default``, a bad value one warning.

    A value above ``maximum`` is clamped to it, with one warning.
    """
    raw = environ.get(name)
    if raw is None or not raw.strip():
        return default
    accepted = "a positive integer" if parse is int else "a positive number"
    try:
        value = parse(raw.strip())
    except ValueError:
        _invalid(name, raw, accepted, default)
        return default
    if not value > 0:
        _invalid(name, raw, accepted, default)
        return default
    if value > maximum:
        logger.warning("%s%s=%r is larger than %s; using %s.", PREFIX, name, raw, _plain(maximum), _plain(maximum))
        return maximum
    return value


def _plain(number: float) -> str:
    """A bound as people write it: ``10000000``, not ``1e+07``."""
    return str(int(number)) if float(number).is_integer() else str(number)


def _bounded(value: float, maximum: float, name: str) -> float:
    """An argument given in code, clamped to ``maximum`` with one warning."""
    if value > maximum:
        logger.warning("%s%s=%r is larger than %s; using %s.", PREFIX, name, value, _plain(maximum), _plain(maximum))
        return maximum
    return value


def _positive(value: float, message: str) -> float:
    if not value > 0:
        raise ValueError(message)
    return value


def resolve_batch_options(
    variables: BatchVariables,
    max_queue_size: int | None = None,
    schedule_delay_millis: float | None = None,
    max_export_batch_size: int | None = None,
    export_timeout_millis: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> BatchOptions:
    """Arguments win over the environment, which wins over the SDK defaults.

    Bad arguments raise ``ValueError`` with the SDK's messages; bad
    environment values give one warning each and the SDK default is used,
    so a typo in a deployment never stops the application.
    """
    env = os.environ if environ is None else environ
    defaults = BatchOptions()
    explicit_sizes = max_queue_size is not None or max_export_batch_size is not None
    if max_queue_size is None:
        max_queue_size = int(env_number(env, variables.max_queue_size, defaults.max_queue_size, maximum=MAX_QUEUE_SIZE))
    else:
        _positive(max_queue_size, "max_queue_size must be a positive integer.")
        max_queue_size = int(_bounded(max_queue_size, MAX_QUEUE_SIZE, "max_queue_size"))
    if schedule_delay_millis is None:
        schedule_delay_millis = env_number(env, variables.schedule_delay, variables.default_schedule_delay_millis)
    else:
        _positive(schedule_delay_millis, "schedule_delay_millis must be positive.")
        schedule_delay_millis = _bounded(schedule_delay_millis, MAX_MILLIS, "schedule_delay_millis")
    if max_export_batch_size is None:
        max_export_batch_size = int(
            env_number(env, variables.max_export_batch_size, defaults.max_export_batch_size, maximum=MAX_QUEUE_SIZE)
        )
    else:
        _positive(max_export_batch_size, "max_export_batch_size must be a positive integer.")
        max_export_batch_size = int(_bounded(max_export_batch_size, MAX_QUEUE_SIZE, "max_export_batch_size"))
    if export_timeout_millis is not None and not export_timeout_millis > 0:
        # The SDK never uses this value; here it bounds flush and shutdown, so it must be positive.
        logger.warning("%sexport_timeout_millis=%r is not positive; ignoring it.", PREFIX, export_timeout_millis)
        export_timeout_millis = None
    if export_timeout_millis is None:
        export_timeout_millis = env_number(env, variables.export_timeout, defaults.export_timeout_millis)
    export_timeout_millis = _bounded(export_timeout_millis, MAX_MILLIS, "export_timeout_millis")
    if max_export_batch_size > max_queue_size:
        if explicit_sizes:
            raise ValueError("max_export_batch_size must be less than or equal to max_queue_size.")
        logger.warning(
            "%s%s=%d is larger than the queue size %d; using %d.",
            PREFIX,
            variables.max_export_batch_size,
            max_export_batch_size,
            max_queue_size,
            max_queue_size,
        )
        max_export_batch_size = max_queue_size
    return BatchOptions(max_queue_size, schedule_delay_millis, max_export_batch_size, export_timeout_millis)


def resolve_metric_options(
    interval_variable: str,
    timeout_variable: str,
    export_interval_millis: float | None = None,
    export_timeout_millis: float | None = None,
    environ: Mapping[str, str] | None = None,
) -> MetricOptions:
    """Like :func:`resolve_batch_options` for ``OTEL_METRIC_EXPORT_INTERVAL``/``_TIMEOUT`` (floats, ``inf`` allowed)."""
    env = os.environ if environ is None else environ
    defaults = MetricOptions()
    if export_interval_millis is None:
        # ``inf`` means "never on a schedule", as in the SDK.
        export_interval_millis = env_number(
            env, interval_variable, defaults.export_interval_millis, float, maximum=float("inf")
        )
    else:
        _positive(
            export_interval_millis,
            f"interval value {export_interval_millis} is invalid and needs to be larger than zero.",
        )
    if export_timeout_millis is None:
        export_timeout_millis = env_number(env, timeout_variable, defaults.export_timeout_millis, float)
    export_timeout_millis = _bounded(export_timeout_millis, MAX_MILLIS, "export_timeout_millis")
    return MetricOptions(export_interval_millis, export_timeout_millis)
