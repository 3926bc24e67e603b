"""OpenTelemetry for gevent applications, safe across fork and never blocking the hub.

Importing this package imports nothing of OpenTelemetry or gevent: the
``sitecustomize`` launch path relies on that to patch before anything else.
"""

from otel_gevent_distro.version import __version__

__all__ = ["__version__"]
