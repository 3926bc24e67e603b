"""The export pipeline's wire side: OTLP encoding and the OTLP/HTTP transport.

Owns turning the SDK's finished spans and log records into OTLP protobuf bytes
(:mod:`.otlp_encoding`) and sending them (:mod:`.otlp_http`). Imports the
OpenTelemetry SDK and the standard library only; never gevent's patched modules.
"""
