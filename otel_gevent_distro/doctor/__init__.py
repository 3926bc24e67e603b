"""``otel-gevent-distro doctor``: explain what the distro would do here, and what is wrong.

* :mod:`.probe` runs inside a child Python launched with the same environment
  (and the same launch path) as the application, and reports what start-up
  really did: patching, preloads, integrations, the SDK's processors;
* :mod:`.environment` reads what needs no child: options and their sources,
  installed versions and entry points, which distro and configurator
  auto-instrumentation would select;
* :mod:`.checks` turns both into findings, each with advice;
* :mod:`.report` prints them for people or as JSON, and sets the exit code.

Dependency direction: the doctor reads what the running distro did, so it
imports start-up (the preload catalogue, what the sequence and the
integrations did, where ``sitecustomize.py`` is),
:mod:`otel_gevent_distro.runtime` (what gevent patched) and the package's
base modules; only the command line (``otel_gevent_distro.cli``) imports
it, and it never imports the command line.
"""

from otel_gevent_distro.doctor.report import run_doctor

__all__ = ["run_doctor"]
