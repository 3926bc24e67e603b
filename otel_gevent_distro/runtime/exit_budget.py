"""One time budget for everything the pipelines do at interpreter exit.

Owns the process's exit deadline. The first of these starts it: the
``atexit`` hook this module installs (registered after the SDK's providers,
so it runs before their shutdown), or any pipeline's ``shutdown()`` while the
interpreter is exiting. Starting it tells every registered pipeline to export
what it holds now, in parallel on their own threads, and every shutdown that
follows stops waiting at the same deadline: traces, logs and metrics
together take at most ``OTEL_PYTHON_GEVENT_EXIT_TIMEOUT`` milliseconds
(default 5000), whatever the collector does, well inside the 30 s Kubernetes
gives a pod between ``SIGTERM`` and ``SIGKILL``. A program that handles
``SIGTERM`` with ``sys.exit`` leaves through ``atexit`` too, so the same budget
applies.

Nothing here blocks or starts a thread; the deadline is reset in forked
children (each process has its own exit).
"""

from __future__ import annotations

import atexit
import time
import weakref
from typing import Protocol

from otel_gevent_distro.runtime import forksafe


class ExitParticipant(Protocol):
    def begin_exit(self, deadline: float) -> None: ...


_participants: weakref.WeakSet[ExitParticipant] = weakref.WeakSet()  # type: ignore[type-var]
_deadline: float | None = None
_installed = False


def _reset_after_fork() -> None:
    global _deadline
    _deadline = None


def register(participant: ExitParticipant) -> None:
    """Tell ``participant`` when the exit begins (held weakly); installs the ``atexit`` hook once."""
    global _installed
    _participants.add(participant)
    if not _installed:
        _installed = True
        forksafe.register_reset(_reset_after_fork)
        atexit.register(begin)


def run_before_existing_exit_hooks() -> None:
    """Move the ``atexit`` hook after every hook registered so far: ``atexit`` runs the last one first.

    The configurator calls it once the SDK's providers exist, since each
    registers its own shutdown when built and the budget must start before the first.
    """
    global _installed
    if not _installed:
        _installed = True
        forksafe.register_reset(_reset_after_fork)
    atexit.unregister(begin)
    atexit.register(begin)


def budget_s() -> float:
    from otel_gevent_distro.settings import get_settings

    return get_settings().exit_timeout_millis / 1000


def begin() -> float:
    """Start the exit budget (once per process) and return its deadline."""
    global _deadline
    if _deadline is None:
        _deadline = time.monotonic() + budget_s()
        for participant in list(_participants):
            participant.begin_exit(_deadline)
    return _deadline


def begun() -> bool:
    return _deadline is not None


def bound(deadline: float) -> float:
    """``deadline``, or the exit deadline when the exit has begun and that comes first."""
    return deadline if _deadline is None else min(deadline, _deadline)
