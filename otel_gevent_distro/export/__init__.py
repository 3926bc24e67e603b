"""The export's wire side: which exporter each signal gets, OTLP encoding and the OTLP/HTTP transport.

Owns choosing the exporters before the SDK is built (:mod:`.selection`:
unknown names dropped with one warning, OTLP/HTTP given to the distro's own
exporter), turning the SDK's finished spans and log records into OTLP
protobuf bytes (:mod:`.otlp_encoding`) and sending them (:mod:`.otlp_http`,
:mod:`.otlp_http_metrics`).

Dependency direction: this part imports the package's base modules
(``_log``, ``settings``, ``version``), OpenTelemetry and the standard
library only; never gevent's patched modules, and never the pipeline that
calls its exporters (the pipeline knows exporters only by their protocol),
the health telemetry or start-up. Start-up imports :mod:`.selection`; the
exporters are loaded by the SDK through their entry points.
"""
