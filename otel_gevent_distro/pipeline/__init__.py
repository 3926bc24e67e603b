"""The export pipeline: the SDK's processors and metric reader, rebuilt to be fork-safe and kind to the hub.

Owns everything between a finished span, log record or metric collection
and the exporter call:

* the public classes, exported lazily by the package itself
  (``from otel_gevent_distro import GeventBatchSpanProcessor``):
  :mod:`.span_processor`, :mod:`.log_processor`, :mod:`.metric_reader`;
* :mod:`.batch` (the queue, batches, flush and shutdown the two processors
  share), :mod:`.worker` (the native export thread and how callers wait for
  it), :mod:`.native` (the unpatched threads and locks it runs on);
* :mod:`.exporter_calls` (how any exporter is called, judged and shut down),
  :mod:`.options` (``OTEL_BSP_*``, ``OTEL_BLRP_*``, ``OTEL_METRIC_EXPORT_*``) and
  :mod:`.processor_metrics` (the SDK's ``otel.sdk.processor.*`` telemetry).

Dependency direction: this part imports the package's base modules and
:mod:`otel_gevent_distro.runtime` (fork resets, the server-fork registry, the
exit budget, gevent's patch state), and OpenTelemetry's API and SDK. It calls
exporters only through their protocol, so it never imports
:mod:`otel_gevent_distro.export`, the health telemetry or start-up; start-up
(the configurator) imports it. This ``__init__`` imports nothing, so that
importing one module of the part does not load the SDK.
"""
