"""The operating system's threads and locks, as they were before gevent patched them.

Owns the few unpatched primitives the export pipeline runs on: starting a
native thread, native locks, the native thread id, and a wait that blocks
only the calling OS thread. After ``gevent.monkey.patch_all()`` the names in
``_thread`` and ``threading`` are gevent's (a "thread" is a greenlet, a lock
waits by switching to the hub); gevent keeps the originals, and this module
asks for them at call time (and keeps them once ``_thread`` is patched), so
it gives the right objects whether it was imported before or after
patching, and without gevent installed at all.

Invariants: nothing here imports gevent; nothing here touches a gevent hub, so
everything here may be used from any OS thread, including inside an at-fork
hook and during interpreter exit.
"""

from __future__ import annotations

import _thread
import sys
from collections.abc import Callable
from typing import Any

#: Originals looked up once ``_thread`` was patched (patching is never undone).
_patched_originals: dict[str, Any] = {}


def _original(name: str) -> Any:
    # On the emit path (get_ident, per span): gevent's get_original costs
    # about 5 µs a call, a dict lookup a few dozen nanoseconds.
    found = _patched_originals.get(name)
    if found is not None:
        return found
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("_thread"):
        found = _patched_originals[name] = monkey.get_original("_thread", name)
        return found
    return getattr(_thread, name)


def allocate_lock() -> Any:
    """A lock that blocks the OS thread, never the gevent hub's way of waiting."""
    return _original("allocate_lock")()


def get_ident() -> int:
    """The calling OS thread's id (under gevent's patching ``threading.get_ident`` names the greenlet)."""
    ident: int = _original("get_ident")()
    return ident


def start_thread(target: Callable[[], object]) -> int:
    """Start ``target`` on a new native OS thread; returns its id.

    The thread is invisible to ``threading`` (not in ``threading.enumerate()``,
    never joined at exit, like a daemon thread), so it neither delays the
    interpreter's exit nor takes part in gevent's bookkeeping of patched threads.
    """
    ident: int = _original("start_new_thread")(target, ())
    return ident


class Bell:
    """A wake-up signal between OS threads: :meth:`ring` from anywhere, :meth:`wait` on one thread.

    A binary semaphore on a native lock: rings while nobody waits are kept
    (at most one), so a ring is never lost; ``ring`` never blocks and never
    switches greenlets, so it is safe on the application's emit path.
    """

    def __init__(self) -> None:
        self._lock = allocate_lock()
        self._lock.acquire()

    def ring(self) -> None:
        try:  # noqa: SIM105 - on the emit path: cheaper than contextlib.suppress
            self._lock.release()
        except RuntimeError:  # already rung and not yet heard
            pass

    def wait(self, timeout_s: float) -> bool:
        """Block this OS thread until rung or ``timeout_s`` passed; True when rung."""
        return bool(self._lock.acquire(True, max(0.0, min(timeout_s, _thread.TIMEOUT_MAX))))
