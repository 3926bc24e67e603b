"""The process the distro runs in: fork, the server's fork, exit, and what gevent patched.

Owns the process-wide registries every other part hooks into, and nothing
that exports, measures or starts telemetry:

* :mod:`.forksafe`: the at-fork resets and child starts, and the flushes before
  a ``multiprocessing`` child exits;
* :mod:`.server_fork`: work that waits for uWSGI's fork (:func:`~.server_fork.after_server_fork`);
* :mod:`.exit_budget`: the one deadline of everything done at interpreter exit;
* :mod:`.gevent_state`: which modules gevent patched, and whether this is the
  main OS thread;
* :mod:`.import_hooks`: work that waits for a module's first import (the
  gevent integrations);
* :mod:`.upstream_misses`: what did not take effect because upstream moved a
  private name (start-up's checks and the health telemetry report there).

Dependency direction: this part imports only the package's base modules
(``_log``, ``settings``, ``environment_variables``, ``version``) and the
standard library; the pipeline, the health telemetry and start-up import it.
It never imports gevent or OpenTelemetry, so it is safe in an at-fork hook.
"""
