"""Order the interpreter's exit hooks so that exporting at exit keeps working.

An HTTP connection pool made by an exporter registers a ``weakref.finalize``;
if ``weakref``'s own exit hook is first registered during exit, it runs after
greenlet is torn down and prints ``RuntimeError: greenlet is being
finalized``. :func:`order_exit_hooks` registers that hook at start-up, so it
runs after the SDK's shutdown.
"""

from __future__ import annotations

import weakref

_anchor: object | None = None


class _Anchor:
    """An object whose only purpose is to own one ``weakref.finalize``."""


def order_exit_hooks() -> None:
    """Register ``weakref``'s exit hook now (idempotent)."""
    global _anchor
    if _anchor is None:
        _anchor = _Anchor()
        weakref.finalize(_anchor, int)
