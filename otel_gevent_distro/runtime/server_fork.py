"""Work that must wait for the server's fork: :func:`after_server_fork`.

uWSGI forks its workers from C, without Python's fork protocol, so a native
thread alive in the process that forks (the master, or the only process
without one) can hold the GIL or a runtime lock at that moment, and the
worker it forks then hangs for good, never answering even SIGINT.
:func:`after_server_fork` is how the distro starts its own threads (the
pipelines' export threads, gevent's monitor thread, the resolver's thread
pool): at once anywhere else, and inside uWSGI in each worker right after
the fork, run by the uWSGI post-fork hook that start-up installs
(:mod:`otel_gevent_distro.startup.uwsgi_hooks`), which calls
:func:`run_after_fork_actions`.

Owns that registry and the few questions about uWSGI it needs answered (is
this process uWSGI's, is its ``uwsgi`` module ready, is this a forked
worker). Nothing here starts anything but the actions it is given, imports
OpenTelemetry or gevent, or raises into the server.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from otel_gevent_distro._log import PREFIX, logger

#: Work that must wait for uWSGI's fork (see :func:`after_server_fork`), in order.
_after_fork_actions: list[Callable[[], object]] = []

#: Pid of the uWSGI worker the post-fork work last ran in.
_post_fork_ran_in_pid: int | None = None


def after_server_fork(action: Callable[[], object]) -> bool:
    """Run ``action`` now, or in each uWSGI worker right after it is forked.

    Inside uWSGI, before this process became a worker, ``action`` is kept
    (once, however often it is passed) and run by the post-fork hook of every
    worker. Returns True when it ran now. ``action`` must not raise; if it
    does, one warning is logged.
    """
    if _waiting_for_uwsgi_fork():
        if action not in _after_fork_actions:
            _after_fork_actions.append(action)
        return False
    _run_safely(action)
    return True


def run_after_fork_actions() -> None:
    """Run the kept actions, once per worker: the uWSGI post-fork hook calls it."""
    global _post_fork_ran_in_pid
    if _post_fork_ran_in_pid == os.getpid():
        return
    _post_fork_ran_in_pid = os.getpid()
    for action in _after_fork_actions:
        _run_safely(action)


def _waiting_for_uwsgi_fork() -> bool:
    if _post_fork_ran_in_pid == os.getpid() or not started_by_uwsgi():
        return False
    uwsgi = uwsgi_module()
    return uwsgi is None or not forked_by_uwsgi(uwsgi)


def _run_safely(action: Callable[[], object]) -> None:
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - telemetry must not stop the server
        name = getattr(action, "__name__", repr(action))
        logger.warning("%s%s failed after the server's fork (%s: %s).", PREFIX, name, type(exc).__name__, exc)


# --- what this process is to uWSGI ------------------------------------------------


def uwsgi_module() -> Any:
    """The ``uwsgi`` module once uWSGI has filled it in, else None."""
    module = sys.modules.get("uwsgi")
    return module if module is not None and hasattr(module, "masterpid") else None


def started_by_uwsgi() -> bool:
    """True when this process is uWSGI's (on Linux: ``/proc/self/exe`` is named ``uwsgi*``)."""
    try:
        executable = os.path.basename(os.readlink("/proc/self/exe"))
    except OSError:
        executable = ""
    return executable.startswith("uwsgi")


def forked_by_uwsgi(uwsgi: Any) -> bool:
    """True in a worker that uWSGI's master forked."""
    master = uwsgi.masterpid()
    return bool(master) and master != os.getpid()
