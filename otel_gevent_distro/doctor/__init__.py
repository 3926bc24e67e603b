"""``otel-gevent-distro doctor``: explain what the distro would do here, and what is wrong.

* :mod:`.probe` runs inside a child Python launched with the same environment
  (and the same launch path) as the application, and reports what start-up
  really did: patching, preloads, integrations, the SDK's processors;
* :mod:`.environment` reads what needs no child: options and their sources,
  installed versions and entry points, which distro and configurator
  auto-instrumentation would select;
* :mod:`.checks` turns both into findings, each with advice;
* :mod:`.report` prints them for people or as JSON, and sets the exit code.
"""

from otel_gevent_distro.doctor.report import run_doctor

__all__ = ["run_doctor"]
