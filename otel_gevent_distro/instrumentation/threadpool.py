"""Carry the OpenTelemetry context into tasks of ``gevent.threadpool.ThreadPool``.

A thread pool runs each task in a real, long-lived OS thread, so the task
must be wrapped at submission: ``ThreadPool.spawn`` captures the caller's
context and the task runs with it attached, detached again afterwards so
the worker thread's next task does not inherit it. Every other submission
method (``apply``, ``apply_async``, ``map``, ``imap``, ``imap_unordered``,
``gevent.threadpool.ThreadPoolExecutor.submit``) goes through ``spawn``.

Only ``ThreadPool.spawn`` is replaced, and :func:`uninstall` puts the very
same function object back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry.context import Context, attach, detach, get_current

from otel_gevent_distro._log import PREFIX, logger

_original_spawn: Callable[..., Any] | None = None


class ContextCarryingTask:
    """A thread-pool task that runs its function in the context captured at submission."""

    __slots__ = ("context", "function")

    def __init__(self, function: Callable[..., Any], context: Context) -> None:
        self.function = function
        self.context = context

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        token = attach(self.context)
        try:
            return self.function(*args, **kwargs)
        finally:
            detach(token)

    def __repr__(self) -> str:
        return repr(self.function)


def _make_spawn(original: Callable[..., Any]) -> Callable[..., Any]:
    def spawn(self: Any, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        current = get_current()
        if current:
            func = ContextCarryingTask(func, current)
        return original(self, func, *args, **kwargs)

    spawn.__wrapped__ = original  # type: ignore[attr-defined]
    spawn.__doc__ = original.__doc__
    spawn.__name__ = original.__name__
    spawn.__qualname__ = original.__qualname__
    return spawn


def install() -> None:
    """Replace ``ThreadPool.spawn`` with the context-carrying version, once."""
    global _original_spawn
    from gevent.threadpool import ThreadPool

    if _original_spawn is not None:
        return
    original = ThreadPool.__dict__["spawn"]
    ThreadPool.spawn = _make_spawn(original)  # type: ignore[method-assign]
    _original_spawn = original


def uninstall() -> None:
    """Put the original ``ThreadPool.spawn`` back."""
    global _original_spawn
    from gevent.threadpool import ThreadPool

    original = _original_spawn
    if original is None:
        return
    current = ThreadPool.__dict__.get("spawn")
    if getattr(current, "__wrapped__", None) is not original:
        # Someone wrapped ours since; restoring would drop their wrapper.
        logger.warning("%sThreadPool.spawn was re-wrapped by other code; leaving it in place.", PREFIX)
        return
    ThreadPool.spawn = original  # type: ignore[method-assign]
    _original_spawn = None
