"""The parts of the distro that did not take effect in this process, because upstream moved a private name.

Owns the list of *misses* and the one warning each gives: the checks after
start-up (:mod:`otel_gevent_distro.startup.upstream_checks`) and the health
telemetry (gevent's monitor internals) report here, and the doctor's probe
lists what was reported. A part is reported once per process. Nothing here
raises, imports OpenTelemetry or gevent, or changes anything.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass

from otel_gevent_distro._log import PREFIX, logger


@dataclass(frozen=True)
class Miss:
    """One part of the distro that did not take effect in this process."""

    part: str
    upstream: str
    consequence: str

    def line(self) -> str:
        return f"{self.part} is not in place with {self.upstream}: {self.consequence}"


_misses: list[Miss] = []


def misses() -> list[Miss]:
    """The parts that did not take effect in this process, in the order found."""
    return list(_misses)


def report_miss(part: str, distribution: str, consequence: str) -> None:
    """Record ``part`` as not in place and warn once for it."""
    if any(miss.part == part for miss in _misses):
        return
    miss = Miss(part, f"{distribution} {_version(distribution)}", consequence)
    _misses.append(miss)
    logger.warning("%s%s; please report it with this line.", PREFIX, miss.line())


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown)"
