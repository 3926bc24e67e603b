"""A Celery worker on the gevent pool, with a real Redis broker.

The test starts a throw-away ``redis-server`` on 127.0.0.1, then
``celery -A celery_app worker -P gevent`` under ``opentelemetry-instrument``
or with the distro's sitecustomize folder on ``PYTHONPATH``. A producer
script, started the same way, publishes N tasks and exits. The receiver must
hold exactly N producer spans and N consumer spans, each consumer span the
child of (or linked to) the producer span of its message, and neither
program may print a traceback.
"""

from __future__ import annotations

import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.launch import ALL_INSTRUMENTATIONS, BIN, run_app
from tests.receiver import OtlpReceiver, ReceivedSpan
from tests.servers import (
    APPS,
    CONSUMER,
    PRODUCER,
    ServerProcess,
    assert_no_noise,
    launch_command,
    redis_server,
    report,
)

pytest.importorskip("celery", reason="celery is not installed")
pytest.importorskip("redis", reason="the redis client is not installed (pip install 'celery[redis]')")
pytest.importorskip(
    "opentelemetry.instrumentation.celery", reason="opentelemetry-instrumentation-celery is not installed"
)

TASKS = 20
PATHS = ("instrument", "sitecustomize")


def _is_child_or_link(consumer: ReceivedSpan, producer: ReceivedSpan) -> bool:
    if consumer.trace_id == producer.trace_id and consumer.parent_span_id == producer.span_id:
        return True
    return (producer.trace_id, producer.span_id) in consumer.links


@pytest.mark.parametrize("via", PATHS)
def test_celery_gevent_worker_consumes_with_producer_context(tmp_path: Path, receiver: OtlpReceiver, via: str) -> None:
    with redis_server(tmp_path / "redis") as broker:
        env = {
            **receiver.env("http/protobuf"),
            "CELERY_BROKER_URL": broker,
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
        worker_command = [
            str(BIN / "celery"),
            "-A",
            "celery_app",
            "worker",
            "-P",
            "gevent",
            "-c",
            "10",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
            "--loglevel",
            "INFO",
        ]
        command, full_env = launch_command(worker_command, via, env)
        with (
            ServerProcess("celery worker", command, full_env, APPS, tmp_path / "worker.log") as worker,
            ThreadPoolExecutor(max_workers=1) as background,
        ):
            # Both start at once (start-up dominates the run time); the broker keeps
            # the messages until the worker is ready.
            publishing = background.submit(
                run_app,
                APPS / "celery_producer.py",
                via,
                env={**ALL_INSTRUMENTATIONS, **env},
                args=[str(TASKS)],
                timeout=60,
            )
            worker.wait_for_output(r"celery@\S+ ready\.", timeout=60)
            producer = publishing.result()
            producer.assert_clean()
            assert producer.stdout.strip() == f"published {TASKS}"
            receiver.wait_for(lambda s: s.kind == CONSUMER, min_matches=TASKS, timeout=30)
            assert worker.stop(signal.SIGTERM) == 0, worker.output()
            output = worker.output()
    assert_no_noise("celery worker", output)
    spans = receiver.spans()
    producers = {s.span_id: s for s in spans if s.kind == PRODUCER}
    consumers = [s for s in spans if s.kind == CONSUMER]
    names = sorted({s.name for s in spans})
    assert len(producers) == TASKS, f"{len(producers)} producer spans: {names}"
    assert len(consumers) == TASKS, f"{len(consumers)} consumer spans: {names}"
    unmatched = [
        c
        for c in consumers
        if not any(_is_child_or_link(c, p) for p in producers.values() if p.name.endswith("tasks.add"))
    ]
    assert not unmatched, f"consumer spans without their producer: {unmatched}"
    pairs = {c.parent_span_id or c.links[0][1] for c in consumers}
    assert len(pairs) == TASKS, "two consumer spans claim the same producer span"
    report(
        "celery worker -P gevent (redis)",
        via,
        producer=len(producers),
        consumer=len(consumers),
        matched=len(consumers) - len(unmatched),
    )
