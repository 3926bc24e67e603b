"""The export pipeline's lifecycle, side by side: the stock setup and this distro, same programs.

Each scenario launches one small program through ``opentelemetry-instrument``
as the ``stock`` contender (``opentelemetry-distro`` with the SDK's processors
and upstream's ``patch_all`` switch) and as ``ours`` (``OTEL_PYTHON_DISTRO=gevent``),
against a real OTLP receiver on 127.0.0.1 with the fault the scenario needs,
and prints what arrived and how long the exit took:

* ``fork-mid-export``: the parent's export waits for a 0.5 s answer when it
  forks; both processes make 4 spans and flush. Received / distinct spans.
* ``metrics-child``: a forked child records a counter every 20 ms for 2 s
  (interval 200 ms) and is killed with SIGKILL. Exports that came from it.
* ``emit-switches``: CPU-only code makes spans under ``gevent.Timeout(0.5)``
  beside a busy greenlet, collector never answering. Greenlet switches inside
  ``span.end()``, and whether the Timeout came out of it.
* ``exit-503`` / ``exit-slow``: 1000 spans, then a normal exit; the collector
  answers 503 forever, or after 2 s. Spans delivered and seconds from the
  program's last line to its end.
* ``grpc-no-telemetry``: a program that makes no telemetry, OTLP/gRPC.
  Traceback lines on stderr.

Run: ``python benchmarks/lifecycle.py`` (about two minutes). ``--json``
prints the rows as JSON. The figures in ``docs/design.md`` come from here.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.harness import OURS, STOCK, launch, run_child
from tests.receiver import BlackHole, OtlpReceiver
from tests.test_lifecycle import FORK_MID_EXPORT, METRICS_CHILD, THOUSAND_THEN_EXIT

CONTENDERS = (STOCK, OURS)
SPANS_ONLY = {"OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none", "OTEL_PYTHON_GEVENT_HEALTH": "false"}
COMMON = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "flask,celery,requests,threading",
}

EMIT_SWITCHES = """
    import json, os
    import gevent, greenlet
    from opentelemetry import trace

    tracer = trace.get_tracer("emit")
    inside = [False]
    switches = [0]

    def tracer_hook(event, args):
        if inside[0] and event in ("switch", "throw"):
            switches[0] += 1

    def busy():
        while True:
            gevent.sleep(0)

    gevent.spawn(busy)
    greenlet.settrace(tracer_hook)
    raised_in_end = False
    made = 0
    try:
        with gevent.Timeout(0.5):
            while True:
                span = tracer.start_span("cpu")
                inside[0] = True
                try:
                    span.end()
                except gevent.Timeout:
                    raised_in_end = True
                    raise
                finally:
                    inside[0] = False
                made += 1
                if made % 1000 == 0:
                    gevent.sleep(0)
    except gevent.Timeout:
        pass
    greenlet.settrace(None)
    print(json.dumps({"switches": switches[0], "raised_in_end": raised_in_end, "made": made}), flush=True)
    os._exit(0)
"""

NO_TELEMETRY = """
    import json
    print(json.dumps({"done": True}))
"""


def _program(folder: Path, source: str) -> list[str]:
    path = folder / "app.py"
    path.write_text(textwrap.dedent(source))
    return [sys.executable, str(path)]


def _run(contender: str, folder: Path, source: str, env: dict[str, str], timeout: float = 120) -> Any:
    command, full_env = launch(contender, _program(folder, source), {**COMMON, **env})
    return run_child(command, full_env, timeout=timeout, cwd=folder)


def fork_mid_export(contender: str, receiver: OtlpReceiver, folder: Path) -> dict[str, Any]:
    receiver.reset()
    receiver.configure(delay_s=0.5)
    _run(contender, folder, FORK_MID_EXPORT, {**receiver.env("http/protobuf"), **SPANS_ONLY})
    time.sleep(1.5)
    names = Counter(span.name for span in receiver.spans())
    return {"received": sum(names.values()), "distinct": len(names)}


def metrics_child(contender: str, receiver: OtlpReceiver, folder: Path) -> dict[str, Any]:
    receiver.reset()
    env = {
        **receiver.env("http/protobuf"),
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
        "OTEL_PYTHON_GEVENT_HEALTH": "false",
    }
    child = _run(contender, folder, METRICS_CHILD, env).last_json()["child"]
    exports = [
        metric
        for metric in receiver.metrics()
        if metric.name == "child.ticks" and any(p["attributes"].get("pid") == child for p in metric.data_points)
    ]
    return {"exports from the child": len(exports)}


def emit_switches(contender: str, receiver: OtlpReceiver, folder: Path) -> dict[str, Any]:
    with BlackHole() as hole:
        env = {**hole.env("http/protobuf"), **SPANS_ONLY}
        seen = _run(contender, folder, EMIT_SWITCHES, env).last_json()
    return {"switches in span.end()": seen["switches"], "Timeout from span.end()": seen["raised_in_end"]}


def _exit(contender: str, receiver: OtlpReceiver, folder: Path, **behaviour: Any) -> dict[str, Any]:
    receiver.reset()
    receiver.configure(**behaviour)
    finished = _run(contender, folder, THOUSAND_THEN_EXIT, {**receiver.env("http/protobuf"), **SPANS_ONLY})
    ended = time.time()
    exit_s = ended - finished.last_json()["exiting_at"]
    time.sleep(0.5)
    delivered = len({span.name for span in receiver.spans()}) if behaviour.get("status", 200) == 200 else 0
    lines = [line for line in finished.stderr.splitlines() if "not delivered" in line or "not exported" in line]
    return {"delivered": delivered, "exit s": round(exit_s, 1), "loss lines": len(lines)}


def exit_503(contender: str, receiver: OtlpReceiver, folder: Path) -> dict[str, Any]:
    return _exit(contender, receiver, folder, status=503)


def exit_slow(contender: str, receiver: OtlpReceiver, folder: Path) -> dict[str, Any]:
    return _exit(contender, receiver, folder, delay_s=2.0)


def grpc_no_telemetry(contender: str, receiver: OtlpReceiver, folder: Path) -> dict[str, Any]:
    receiver.reset()
    finished = _run(contender, folder, NO_TELEMETRY, receiver.env("grpc"))
    return {"traceback lines": sum(1 for line in finished.stderr.splitlines() if line.startswith("Traceback"))}


SCENARIOS: dict[str, Callable[[str, OtlpReceiver, Path], dict[str, Any]]] = {
    "fork-mid-export": fork_mid_export,
    "metrics-child": metrics_child,
    "emit-switches": emit_switches,
    "exit-503": exit_503,
    "exit-slow": exit_slow,
    "grpc-no-telemetry": grpc_no_telemetry,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    parser.add_argument("--only", nargs="*", default=[], help="scenario names to run")
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with OtlpReceiver() as receiver, TemporaryDirectory() as tmp:
        for name, scenario in SCENARIOS.items():
            if args.only and name not in args.only:
                continue
            for contender in CONTENDERS:
                print(f"[lifecycle] {name} / {contender}", file=sys.stderr, flush=True)
                folder = Path(tmp) / f"{name}-{contender}"
                folder.mkdir()
                rows.append({"scenario": name, "contender": contender, **scenario(contender, receiver, folder)})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print("| scenario | contender | figures |")
    print("|---|---|---|")
    for row in rows:
        figures = ", ".join(f"{key}: {value}" for key, value in row.items() if key not in ("scenario", "contender"))
        print(f"| {row['scenario']} | {row['contender']} | {figures} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
