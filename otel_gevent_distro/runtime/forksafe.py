"""What happens to the telemetry pipeline in a forked child process.

Owns two small registries:

* **after-fork resets**: callbacks run in every child created by a
  Python-level fork (``os.fork``, gevent's patched fork, ``multiprocessing``,
  gevent's patched ``subprocess``), installed once with
  :func:`os.register_at_fork`. Each one only *resets state*: plain attribute
  assignment and replacing locks and queues with new objects. The hook also
  bumps :data:`generation`, which the emit path compares with one attribute
  read (much cheaper than ``os.getpid()``) to notice that it now runs in a
  new process.
* **child starts**: callbacks run in every such child right after the
  resets, still inside the hook, to start the pipeline's native export
  threads (:class:`~otel_gevent_distro.pipeline.worker.ExportThread`), so a child
  exports on its own schedule from the start, even one that only records
  metrics. A native thread never touches the gevent hub, which is why it may
  start here; nothing may start a greenlet or a ``threading.Thread`` (a
  greenlet once patched) here.
* **before-exit flushes** for ``multiprocessing`` children, which leave
  through ``os._exit`` and so never run ``atexit``: a
  ``multiprocessing.util.Finalize`` registered in each such child runs them.

Apart from the child starts, this module must never start anything, acquire
a lock or log inside an at-fork hook: in a child the gevent hub is not
reinitialised yet (gevent reinitialises it after the hooks, and its patched
``subprocess`` never does before ``exec``). A failing callback is caught and remembered; the
failure is logged at debug level later, outside the hook, by
:func:`log_hook_failures`.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

from otel_gevent_distro._log import PREFIX, logger

#: Bumped in every forked child, inside the at-fork hook. Read it as
#: ``forksafe.generation`` (a module attribute), never import the value.
generation: int = 0
#: A generation no process is in: what an object records before its first use.
NOT_ENTERED = -1

#: Exit priority of the ``multiprocessing`` finalizer that flushes telemetry:
#: positive so it runs before the child's ``atexit``-like cleanup of pools
#: and queues with priority 0 or none, low enough that the application's own
#: higher-priority finalizers (which may still emit telemetry) run first.
MULTIPROCESSING_EXIT_PRIORITY = 5

_Ref = Callable[[], "Callable[[], object] | None"]

_resets: list[_Ref] = []
_child_starts: list[_Ref] = []
_exit_flushes: list[_Ref] = []
_hook_failures: list[tuple[str, BaseException]] = []
_installed = False


class _MultiprocessingToken:
    """Weak-referenceable key for ``multiprocessing.util.register_after_fork``."""


_MP_TOKEN = _MultiprocessingToken()


def _weak(callback: Callable[[], object]) -> _Ref:
    """A weak reference to ``callback``: bound methods must not keep their object alive."""
    if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
        return weakref.WeakMethod(callback)  # type: ignore[arg-type]
    return lambda: callback


def _prune(refs: list[_Ref]) -> None:
    refs[:] = [ref for ref in refs if ref() is not None]


def register_reset(callback: Callable[[], object]) -> None:
    """Run ``callback`` in every forked child, inside the at-fork hook (held weakly).

    ``callback`` must only assign attributes and create new objects.
    """
    install()
    _prune(_resets)
    _resets.append(_weak(callback))


def register_child_start(callback: Callable[[], object]) -> None:
    """Run ``callback`` in every forked child after the resets (held weakly).

    ``callback`` may start a native thread and nothing else.
    """
    install()
    _prune(_child_starts)
    _child_starts.append(_weak(callback))


def register_exit_flush(callback: Callable[[], object]) -> None:
    """Run ``callback`` before a ``multiprocessing`` child exits (held weakly)."""
    install()
    _prune(_exit_flushes)
    _exit_flushes.append(_weak(callback))


def install() -> None:
    """Install the at-fork hook and the ``multiprocessing`` hook, once per process tree."""
    global _installed
    if _installed:
        return
    _installed = True
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=after_fork_in_child)
    _install_multiprocessing_hook()


def after_fork_in_child() -> None:
    """The at-fork hook: bump the generation, run each reset, then each child start; never raises."""
    global generation
    generation += 1
    for ref in (*_resets, *_child_starts):
        callback = ref()
        if callback is None:
            continue
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - one bad reset must not break the child
            _hook_failures.append((getattr(callback, "__qualname__", repr(callback)), exc))


def log_hook_failures() -> None:
    """Log (at debug level) the resets that failed in this child; call it outside the hook."""
    while _hook_failures:
        name, exc = _hook_failures.pop(0)
        logger.debug("%safter-fork reset %s failed: %s: %s", PREFIX, name, type(exc).__name__, exc)


def _install_multiprocessing_hook() -> None:
    try:
        from multiprocessing import util
    except ImportError:  # pragma: no cover - platforms without multiprocessing
        return
    util.register_after_fork(_MP_TOKEN, _on_multiprocessing_child)


def _on_multiprocessing_child(_token: Any) -> None:
    """Runs in a ``multiprocessing`` child before its target, outside any at-fork hook."""
    from multiprocessing import util

    util.Finalize(None, run_exit_flushes, exitpriority=MULTIPROCESSING_EXIT_PRIORITY)


def run_exit_flushes() -> None:
    """Run every registered before-exit flush; each failure is logged and ignored."""
    for ref in tuple(_exit_flushes):
        callback = ref()
        if callback is None:
            continue
        try:
            callback()
        except Exception as exc:  # noqa: BLE001 - exiting must go on
            logger.debug("%sflush before exit failed: %s: %s", PREFIX, type(exc).__name__, exc)
