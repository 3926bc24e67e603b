"""What gevent did to this process: which modules it patched, and is this the main OS thread.

The one place that asks ``gevent.monkey`` whether something is patched.
gevent is never imported here: ``gevent.monkey`` is only read from
``sys.modules``, so a process where nothing imported it is unpatched. Every
answer is cheap and safe from any OS thread and inside an at-fork hook.
Also stops gevent's monitor of an export thread's own hub
(:func:`silence_this_threads_monitor`), found the same way.
"""

from __future__ import annotations

import os
import sys
import threading


def is_patched() -> bool:
    """True when gevent has patched anything in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_anything_patched())


def module_patched(name: str) -> bool:
    """True when gevent has patched the standard-library module ``name`` (``"threading"``, ``"socket"``...)."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched(name))


def patched_modules() -> list[str]:
    """The standard-library modules gevent has patched, sorted."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return []
    return sorted(name for name in monkey.saved if not name.startswith("_") and monkey.is_module_patched(name))


def on_main_native_thread() -> bool:
    """True on the process's main OS thread (where gevent's main hub lives), also right after a fork."""
    if sys.platform.startswith("linux"):
        # The main thread's kernel id is the process id.
        return threading.get_native_id() == os.getpid()
    return threading.get_native_id() == threading.main_thread().native_id


def silence_this_threads_monitor() -> None:
    """Stop gevent's monitor of the calling thread's own hub, if it has one; call on an export thread.

    An export thread blocks on purpose (it waits for work, and exports
    without ever running its hub). When something on it made a gevent hub (an
    exporter on patched sockets, gRPC's gevent mode, the thread's own pool),
    gevent starts a monitor thread for that hub as soon as it runs, which then
    finds the thread "blocked" ten times a second and formats a report of every
    greenlet each time: 9 % of a core for an idle process, printed to stderr
    on gevent without ``print_blocking_reports``. gevent's thread pool
    silences its workers' monitors for the same reason. ``kill()`` must run on
    this thread (it takes the monitor's tracer out of this thread); a killed
    monitor is never restarted for that hub.
    """
    hub_local = sys.modules.get("gevent._hub_local")
    get_hub_if_exists = getattr(hub_local, "get_hub_if_exists", None)
    if get_hub_if_exists is None:
        return
    monitor = getattr(get_hub_if_exists(), "periodic_monitoring_thread", None)
    if monitor is not None and getattr(monitor, "should_run", False):
        monitor.kill()
