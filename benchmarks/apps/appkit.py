"""Small helpers shared by the measured programs in this folder.

Each program calls :func:`ensure_patched` first: under ``opentelemetry-instrument``
or the distro's ``sitecustomize`` gevent is already patched; run plainly (the
``none`` floor) the program patches itself, as a gevent application does.
This module imports nothing but ``json``, ``os`` and ``sys`` at import time.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def ensure_patched() -> None:
    """``gevent.monkey.patch_all()`` unless a launch path already patched."""
    from gevent import monkey

    if not monkey.is_anything_patched():
        monkey.patch_all()


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = -(-len(ordered) * fraction // 1)
    return ordered[min(len(ordered), max(1, int(rank))) - 1]


def _exporter_name(processor: Any) -> str:
    for attribute in ("span_exporter", "_exporter", "exporter"):
        exporter = getattr(processor, attribute, None)
        if exporter is not None:
            return type(exporter).__name__
    inner = getattr(processor, "_batch_processor", None)
    return _exporter_name(inner) if inner is not None else "?"


def telemetry_facts() -> dict[str, Any]:
    """What the launch path set up: patching, tracer provider, processors, gRPC's gevent mode."""
    from gevent import monkey

    facts: dict[str, Any] = {"patched": monkey.is_anything_patched()}
    trace = sys.modules.get("opentelemetry.trace")
    if trace is not None:
        provider = trace.get_tracer_provider()
        facts["provider"] = type(provider).__name__
        active = getattr(provider, "_active_span_processor", None)
        processors = getattr(active, "_span_processors", ())
        facts["processors"] = [f"{type(p).__name__}({_exporter_name(p)})" for p in processors]
        facts["dropped"] = [getattr(p, "dropped", None) for p in processors]
    cygrpc = sys.modules.get("grpc._cython.cygrpc")
    facts["grpc_gevent_mode"] = bool(getattr(cygrpc, "g_gevent_activated", False)) if cygrpc else None
    return facts


def finish(result: dict[str, Any]) -> None:
    """Print ``result`` as the last JSON line and leave at once.

    ``os._exit`` skips the SDK's shutdown flush on purpose: the figures are
    taken, and flushing into a collector that never answers would only add
    the export timeout to the run.
    """
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
