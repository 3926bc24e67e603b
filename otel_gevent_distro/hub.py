"""What the distro needs to know about gevent's hub: is the process patched, is this the main OS thread.

gevent is never imported here; both answers are cheap and safe from any OS
thread and inside an at-fork hook.
"""

from __future__ import annotations

import os
import sys
import threading


def threading_patched() -> bool:
    """True when gevent has monkey-patched ``threading`` in this process."""
    monkey = sys.modules.get("gevent.monkey")
    return bool(monkey is not None and monkey.is_module_patched("threading"))


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
