"""gevent's health as OpenTelemetry telemetry: loop blocking, loop lag, live greenlets.

Owns the instruments of meter ``otel_gevent_distro.health`` and the log
record ``gevent.loop.blocked``: :mod:`.monitor` (the process's monitor, the
lag probe and the greenlet count), :mod:`.loop_blocking` (gevent's
blocked-loop reports turned into a histogram and a log record) and
:mod:`.parking_monitor` (gevent's monitor thread, parked while the hub polls).

Code that builds the SDK itself starts (and stops) it with::

    from otel_gevent_distro.health import start_health_monitoring, stop_health_monitoring

Dependency direction: this part imports the package's base modules,
:mod:`otel_gevent_distro.runtime` (the exit budget it stops reporting at,
gevent's patch state, the list of upstream misses), gevent and
OpenTelemetry's API. It never imports the
pipeline, the export or start-up: what it records goes through whatever
providers the SDK has. Start-up imports it once the SDK is built.
"""

from otel_gevent_distro.health.monitor import start_health_monitoring, stop_health_monitoring

__all__ = ["start_health_monitoring", "stop_health_monitoring"]
