"""Hooks for servers that fork and exit behind Python's back (uWSGI).

uWSGI forks its workers from C. Unless it is started with
``--py-call-osafterfork`` or ``--py-call-uwsgi-fork-hooks``, no Python
at-fork hook runs in a worker: gevent's hub (created in the master as soon as
anything waited on it, for example the SDK's resource detection) is inherited
without ``gevent.reinit()``, so the workers share the master's event-loop
descriptors, and the distro's fork resets never run. In gevent mode
(``async > 1``) uWSGI also skips Python's ``atexit`` in its workers, so the
SDK never flushes its last batch when a worker stops.

Inside uWSGI, :func:`install_server_hooks` installs, once:

* a post-fork hook that, in a forked process only, reinitialises gevent's hub
  and runs the distro's fork resets. It goes first in ``uwsgidecorators``'
  ``postfork`` chain when that module can be used (a master is running), so
  users' ``@postfork`` functions keep working (importing it has its usual
  effect of setting ``uwsgi.spooler``); otherwise it wraps any existing
  ``uwsgi.post_fork_hook``;
* an exit hook (``uwsgi.atexit``, wrapping any existing one) that flushes the
  global tracer, meter and logger providers, each within
  :data:`EXIT_FLUSH_TIMEOUT_MS`.

The ``uwsgi`` module only exists once uWSGI has set up Python, after
``sitecustomize`` ran (before Python 3.12 it cannot even be imported then). So
when start-up runs inside uWSGI (on Linux: ``/proc/self/exe`` is named
``uwsgi*``) and the module is not ready, a do-nothing import finder waits for the first import
after it is (uWSGI importing the application) and installs the hooks then;
when that happens in an already forked worker (``lazy-apps``), the post-fork
work runs at once. Outside uWSGI nothing is installed.

The post-fork hook also runs, once per worker, the work that waits for the
fork (:func:`otel_gevent_distro.runtime.server_fork.after_server_fork`: the
distro's threads, which must not exist in the process uWSGI forks from).

Nothing here raises into the server, starts a thread or greenlet, or imports
OpenTelemetry before the exit hook runs. An application that later assigns
``uwsgi.post_fork_hook`` or ``uwsgi.atexit`` itself replaces these hooks: it
should use ``uwsgidecorators.postfork`` or call the previous value.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from otel_gevent_distro._log import PREFIX, logger
from otel_gevent_distro.runtime import server_fork

#: Upper bound for each provider's flush when a uWSGI worker exits.
EXIT_FLUSH_TIMEOUT_MS = 5000

#: Pid of the process the hooks were installed in (None: not installed).
_installed_in_pid: int | None = None


def install_server_hooks() -> bool:
    """Install (now, or as soon as uWSGI is ready) the hooks of the server this process runs in.

    Returns True when something was installed or scheduled. Safe to call more than once.
    """
    if _installed_in_pid is not None or _UwsgiReady.waiting():
        return False
    try:
        if server_fork.uwsgi_module() is not None:
            return _install_uwsgi_hooks()
        if server_fork.started_by_uwsgi():
            sys.meta_path.insert(0, _UwsgiReady())
            return True
    except Exception as exc:  # noqa: BLE001 - telemetry must not stop the server
        logger.warning("%spreparing the uWSGI hooks failed (%s: %s).", PREFIX, type(exc).__name__, exc)
    return False


class _UwsgiReady:
    """A ``sys.meta_path`` finder that never finds anything: it only notices uWSGI is ready.

    It stays in ``sys.meta_path`` (removing a finder while the import system
    iterates over the list would skip the next one) and costs one dictionary
    lookup per import until it fires, then one attribute check.
    """

    _active: _UwsgiReady | None = None

    def __init__(self) -> None:
        self.fired = False
        type(self)._active = self

    @classmethod
    def waiting(cls) -> bool:
        return cls._active is not None and not cls._active.fired

    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None) -> None:
        if self.fired or server_fork.uwsgi_module() is None:
            return None
        self.fired = True
        _install_uwsgi_hooks()
        return None


def _install_uwsgi_hooks() -> bool:
    global _installed_in_pid
    uwsgi = server_fork.uwsgi_module()
    if uwsgi is None or _installed_in_pid is not None:
        return False
    _installed_in_pid = os.getpid()
    try:
        _install_post_fork(uwsgi)
        uwsgi.atexit = _chained(flush_providers, getattr(uwsgi, "atexit", None))
        if server_fork.forked_by_uwsgi(uwsgi):
            _after_fork()  # lazy-apps: this worker was forked before the distro could hook in
    except Exception as exc:  # noqa: BLE001 - telemetry must not stop the server
        logger.warning("%sinstalling the uWSGI hooks failed (%s: %s).", PREFIX, type(exc).__name__, exc)
        return False
    logger.debug("%suWSGI detected: post-fork and exit hooks installed.", PREFIX)
    return True


# --- post-fork ----------------------------------------------------------------


def _install_post_fork(uwsgi: Any) -> None:
    chain = _postfork_chain(uwsgi)
    if chain is not None:
        chain.insert(0, after_uwsgi_fork)
    else:
        uwsgi.post_fork_hook = _chained(after_uwsgi_fork, getattr(uwsgi, "post_fork_hook", None))


def _postfork_chain(uwsgi: Any) -> list[Callable[[], object]] | None:
    """``uwsgidecorators.postfork_chain`` when that module can be used here, else None."""
    if not uwsgi.masterpid():  # uwsgidecorators refuses to load without a master
        return None
    try:
        import uwsgidecorators
    except Exception:  # noqa: BLE001 - absent or refusing: fall back to the raw hook
        return None
    chain = getattr(uwsgidecorators, "postfork_chain", None)
    runner = getattr(uwsgidecorators, "postfork_chain_hook", None)
    if not isinstance(chain, list) or getattr(uwsgi, "post_fork_hook", None) is not runner:
        return None
    return chain


def after_uwsgi_fork() -> None:
    """uWSGI's post-fork hook: in a forked process, what Python's fork machinery would have done."""
    if _installed_in_pid is None:
        return
    if os.getpid() == _installed_in_pid:
        server_fork.run_after_fork_actions()  # not forked: without a master, worker 1 is the original process
        return
    _after_fork()


def _after_fork() -> None:
    hub = sys.modules.get("gevent.hub")
    if hub is not None:
        try:
            hub.reinit()
        except Exception as exc:  # noqa: BLE001 - the worker must still start
            logger.warning("%sgevent.reinit() failed in a uWSGI worker (%s: %s).", PREFIX, type(exc).__name__, exc)
    from otel_gevent_distro.runtime import forksafe

    forksafe.after_fork_in_child()  # never raises: each failure is kept for log_hook_failures
    forksafe.log_hook_failures()
    server_fork.run_after_fork_actions()


# --- exit -----------------------------------------------------------------------


def flush_providers(timeout_millis: int = EXIT_FLUSH_TIMEOUT_MS) -> None:
    """Flush the global tracer, meter and logger providers; each failure is logged and ignored."""
    getters = (
        ("opentelemetry.trace", "get_tracer_provider"),
        ("opentelemetry.metrics", "get_meter_provider"),
        ("opentelemetry._logs", "get_logger_provider"),
    )
    for module_name, getter in getters:
        module = sys.modules.get(module_name)
        flush = getattr(getattr(module, getter)(), "force_flush", None) if module is not None else None
        if flush is None:
            continue
        try:
            flush(timeout_millis=timeout_millis)
        except Exception as exc:  # noqa: BLE001 - exiting must go on
            logger.debug("%s%s().force_flush at exit failed: %s: %s", PREFIX, getter, type(exc).__name__, exc)


def _chained(first: Callable[[], None], then: Callable[[], object] | None) -> Callable[[], None]:
    """Call ``first`` (never raising), then the hook that was there before."""

    def hook() -> None:
        try:
            first()
        except Exception as exc:  # noqa: BLE001 - the previous hook must still run
            logger.warning("%s%s failed (%s: %s).", PREFIX, first.__name__, type(exc).__name__, exc)
        if then is not None:
            then()

    hook.__name__ = f"otel_gevent_distro_{first.__name__}"
    return hook
