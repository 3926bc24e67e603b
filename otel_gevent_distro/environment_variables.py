"""The names of every option this distro reads from the environment.

Registered under the ``opentelemetry_environment_variables`` entry-point group,
so ``opentelemetry-instrument`` turns each ``OTEL_PYTHON_GEVENT_*`` name into a
command-line flag (``OTEL_PYTHON_GEVENT_PATCH`` becomes ``--gevent_patch``).
Parsing and validation live in :mod:`otel_gevent_distro.settings`.
"""

OTEL_PYTHON_GEVENT_PATCH = "OTEL_PYTHON_GEVENT_PATCH"
"""``all`` (default): call ``gevent.monkey.patch_all()`` before the SDK exists;
``none``: leave patching to the application."""

OTEL_PYTHON_GEVENT_PATCH_EXCLUDE = "OTEL_PYTHON_GEVENT_PATCH_EXCLUDE"
"""Comma list of ``patch_all`` modules to leave unpatched, e.g. ``thread,subprocess``."""

OTEL_PYTHON_GEVENT_PRELOAD = "OTEL_PYTHON_GEVENT_PRELOAD"
"""Comma list of extra modules to import after patching and before the SDK is built."""

OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS = "OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS"
"""``true`` (default) or ``false``: also preload the built-in catalog of libraries
that fork or spawn a process when imported."""

OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS = "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS"
"""Comma list of gevent integrations to leave off (``grpc``, ``psycogreen``)."""

OTEL_PYTHON_GEVENT_HEALTH = "OTEL_PYTHON_GEVENT_HEALTH"
"""``true`` (default) or ``false``: report gevent's health as telemetry (event-loop
blocking, loop lag, live greenlets); turns on gevent's monitor thread."""

OTEL_PYTHON_GEVENT_HEALTH_INTERVAL = "OTEL_PYTHON_GEVENT_HEALTH_INTERVAL"
"""Seconds between two loop-lag measurements (default ``1``; at least ``0.01``)."""

OTEL_PYTHON_GEVENT_EXIT_TIMEOUT = "OTEL_PYTHON_GEVENT_EXIT_TIMEOUT"
"""Milliseconds that exporting may take at interpreter exit, all signals together
(default ``5000``; from ``0`` to ``120000``). Whatever the collector does, the
process ends this long after its exit began, and every item not delivered is
counted in one line."""

OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER = "OTEL_PYTHON_GEVENT_OTLP_HTTP_EXPORTER"
"""``distro`` (default): spans and log records sent over OTLP/HTTP (``otlp`` with
``http/protobuf``, or ``otlp_proto_http``) go through the distro's lean exporter,
which never touches gevent's patched sockets; ``upstream``: through
``opentelemetry-exporter-otlp-proto-http``'s exporter instead."""
