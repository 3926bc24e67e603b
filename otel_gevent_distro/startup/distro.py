"""The ``gevent`` distro (entry point group ``opentelemetry_distro``).

Selected with ``OTEL_PYTHON_DISTRO=gevent``. Its :meth:`GeventDistro._configure`
runs before any configurator or instrumentor: it runs the start-up sequence
(:mod:`otel_gevent_distro.startup.sequence`) up to the SDK build: patch, preload,
integrations, and the defaults, including
``OTEL_PYTHON_CONFIGURATOR=gevent`` so this distro's configurator builds the
SDK even when ``opentelemetry-distro``'s configurator is installed beside it.
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]

from otel_gevent_distro.startup.defaults import DEFAULTS, apply_defaults, remember_user_environment
from otel_gevent_distro.startup.sequence import start

__all__ = ["DEFAULTS", "GeventDistro", "apply_defaults"]


class _ChosenConfiguratorNotice(logging.Filter):
    """Drop auto-instrumentation's warning that another configurator was skipped
    because ``gevent`` was chosen: that is this distro working as designed, and
    with ``opentelemetry-distro`` installed it would print on every start."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        skipped_for_us = str(record.msg).startswith("Configuration of %s not loaded") and args[1:2] == ("gevent",)
        return not skipped_for_us


def quiet_configurator_notice() -> None:
    """Install :class:`_ChosenConfiguratorNotice` once."""
    load_logger = logging.getLogger("opentelemetry.instrumentation.auto_instrumentation._load")
    if not any(isinstance(f, _ChosenConfiguratorNotice) for f in load_logger.filters):
        load_logger.addFilter(_ChosenConfiguratorNotice())


class GeventDistro(BaseDistro):  # type: ignore[misc]
    """Patch gevent first, then let auto-instrumentation build the SDK."""

    def _configure(self, **kwargs: Any) -> None:
        remember_user_environment()
        start()
        quiet_configurator_notice()
