"""Start-up: the one sequence that prepares a gevent process for OpenTelemetry, and every way in.

Owns the order of start-up (:mod:`.sequence`: patch, preload, integrations,
the distro's defaults, the SDK build, the health telemetry) and the launch
paths that run it: the ``sitecustomize`` folder and the Operator's image
(:mod:`.launch`), the ``gevent`` distro (:mod:`.distro`) and configurator
(:mod:`.configurator`). Also every step that runs only there:
:mod:`.defaults`, :mod:`.patching`, :mod:`.preload`, :mod:`.integrations`
(gRPC's gevent mode, psycogreen; also gevent's ``did_patch_all`` plugin),
:mod:`.uwsgi_hooks` (uWSGI's post-fork and exit hooks),
:mod:`.resource_refresh` (the SDK's resource refresh after fork, made
thread-free), :mod:`.exit_flush` (what exporting at exit needs prepared:
``weakref``'s exit hook in order, gRPC's pool threads ready) and
:mod:`.upstream_checks` (after the build: what the distro put into the SDK
is in place).

``exit_flush`` is here, not in the pipeline: nothing in the pipeline calls
it; start-up and the gRPC integration prepare the process with it.

Dependency direction: start-up sits above every other part of the running
distro: it imports the package's base modules, :mod:`otel_gevent_distro.runtime`,
:mod:`otel_gevent_distro.pipeline` (the configurator installs its classes),
:mod:`otel_gevent_distro.export` (the exporter selection) and
:mod:`otel_gevent_distro.health`; none of them imports start-up. Only the
doctor and the command line import it. This ``__init__`` imports nothing:
``sitecustomize`` imports :mod:`.launch` before gevent has patched anything,
and that must not load OpenTelemetry.
"""
