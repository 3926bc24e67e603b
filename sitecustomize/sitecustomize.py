"""otel-gevent-distro start-up: patch gevent, then start OpenTelemetry.

Put this folder first on PYTHONPATH (``otel-gevent-distro sitecustomize-path``
prints where the installed copy lives). All logic is in
``otel_gevent_distro.startup.launch``; this file only decides *when* it runs.
"""

try:
    from otel_gevent_distro.startup.launch import run_sitecustomize
except ImportError as _exc:
    import sys

    sys.stderr.write(f"otel-gevent-distro: not importable ({_exc}); the application runs without telemetry.\n")
else:
    run_sitecustomize(__file__)
