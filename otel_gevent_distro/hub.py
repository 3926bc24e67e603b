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
