"""The ``gevent`` instrumentor (entry point group ``opentelemetry_instrumentor``).

Makes traces follow work into greenlets and gevent's thread pool: a span
started in a greenlet or thread-pool task has, as parent, the span that was
active where the work was started. It creates no spans of its own.

Loaded by auto-instrumentation by default; ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=gevent``
turns it off. Manual use::

    from otel_gevent_distro.instrumentation import GeventInstrumentor
    GeventInstrumentor().instrument()

Two hooks (see :mod:`.greenlets` and :mod:`.threadpool`): a gevent spawn
callback for every greenlet form, including greenlet-backed
``threading.Thread`` after ``patch_all()``, and ``ThreadPool.spawn`` for
real-thread tasks. ``threading`` itself is never wrapped, so this
instrumentor and ``opentelemetry-instrumentation-threading`` can both be on.

Dependency direction: this part imports only the package's base modules
(``_log``), gevent and OpenTelemetry's API: context propagation needs
nothing of the pipeline, the export, the health telemetry or start-up, and
none of them imports it (auto-instrumentation loads it by its entry point).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]

from otel_gevent_distro.instrumentation import greenlets, threadpool

_INSTRUMENTS = ("gevent >= 24.2.1",)

__all__ = ["GeventInstrumentor"]


class GeventInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Carry the OpenTelemetry context into greenlets and gevent thread-pool tasks."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return _INSTRUMENTS

    def _instrument(self, **kwargs: Any) -> None:
        try:
            import gevent  # noqa: F401
        except ImportError:
            # Start-up already said, once, that gevent cannot be imported.
            return
        greenlets.install()
        threadpool.install()

    def _uninstrument(self, **kwargs: Any) -> None:
        greenlets.uninstall()
        threadpool.uninstall()
