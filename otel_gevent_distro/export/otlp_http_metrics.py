"""``OtlpHttpMetricExporter``: metrics over the distro's OTLP/HTTP transport.

Owns the metric exporter that the distro's metric reader gets for ``otlp``
with ``http/protobuf``. Metrics are encoded by upstream's
``opentelemetry-exporter-otlp-proto-common`` (a collection is exported once per
interval, so the encoder's cost matters little here); the request goes through
:mod:`.otlp_http`, which never touches gevent's patched modules on the export
thread. Temporality and aggregation preferences are read by upstream's own
mixin, so they cannot drift from upstream's exporter. This module needs the
``otlp`` extra; without it the exporter check keeps upstream's name, which
then reports the missing extra.
"""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal.metrics_encoder import OTLPMetricExporterMixin
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

from otel_gevent_distro.export.otlp_http import METRICS, ExportOutcome, _OtlpHttpExporter


class OtlpHttpMetricExporter(_OtlpHttpExporter, MetricExporter, OTLPMetricExporterMixin):  # type: ignore[misc]
    """OTLP/HTTP metric exporter; same constructor keywords as upstream's."""

    _signal = METRICS
    _success = MetricExportResult.SUCCESS
    _failure = MetricExportResult.FAILURE

    def __init__(
        self,
        preferred_temporality: dict[type, Any] | None = None,
        preferred_aggregation: dict[type, Any] | None = None,
        **options: Any,
    ) -> None:
        """``options``: the span and log exporters' keywords (endpoint, headers, timeout, ...)."""
        _OtlpHttpExporter.__init__(self, **options)
        self._common_configuration(preferred_temporality, preferred_aggregation)

    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:  # type: ignore[override]
        """Encode and send one collection within ``timeout_millis`` and the export timeout."""
        deadline = time.monotonic() + max(0.0, timeout_millis) / 1000
        if self._shutdown:
            return self._failure
        if self._invalid:
            self._failed(ExportOutcome(False, 0, error=self._invalid))
            return self._failure
        try:
            body = bytes(encode_metrics(metrics_data).SerializeToString())
        except Exception as error:  # noqa: BLE001 - one bad collection must not stop the reader
            self._failed(ExportOutcome(False, 0, error=f"encoding failed ({type(error).__name__}: {error})"))
            return self._failure
        outcome = self._send_body(body, _data_points(metrics_data), deadline)
        return self._success if outcome.delivered else self._failure

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        _OtlpHttpExporter.shutdown(self)


def _data_points(metrics_data: Any) -> int:
    return sum(
        len(metric.data.data_points)
        for resource_metrics in metrics_data.resource_metrics
        for scope_metrics in resource_metrics.scope_metrics
        for metric in scope_metrics.metrics
    )
