"""Row 2, span overhead: start+end of a span on the request path, in process, under gevent.

``apps/span_cost.py`` runs in one plain, patched process and measures, in
turn, the SDK with no span processor (``none``), the SDK's
``BatchSpanProcessor`` (``stock``) and the distro's ``GeventBatchSpanProcessor``
(``ours``; n/a until the distro provides it), twice:

* with an in-memory exporter that only counts spans (the processor's own cost);
* with the OTLP/HTTP exporter sending to a healthy receiver (the cost the
  whole pipeline puts on the one thread a gevent app runs on).

Each figure is process CPU microseconds per span (all threads), export work
of the batch included; wall-clock figures are kept in the JSON notes.
"""

from __future__ import annotations

from harness import (
    APPS_DIR,
    NONE,
    OURS,
    PYTHON,
    STOCK,
    Bench,
    Receiver,
    Row,
    Target,
    launch,
    log,
    main_single,
    run_child,
    shared_receiver,
    unavailable_row,
)

EXPORTERS = (("memory", "in-memory exporter"), ("otlp-http", "OTLP/HTTP to receiver"))


def _row(bench: Bench, receiver: Receiver, exporter: str, title: str) -> Row:
    name = f"span start+end, {title}"
    target = Target("ratio<=", 1.0)
    rounds = bench.pick(3, 15)
    program = [PYTHON, str(APPS_DIR / "span_cost.py"), "--exporter", exporter, "--rounds", str(rounds)]
    command, env = launch(NONE, program, receiver.env("http/protobuf"))
    log(f"span overhead, {title}: {rounds} rounds in one process")
    try:
        result = run_child(command, env, timeout=300, cwd=APPS_DIR).last_json()
    except Exception as exc:  # noqa: BLE001 - report the row as failed, go on with the others
        return Row(name=name, unit="CPU us/span", target=target, errors=[f"{type(exc).__name__}: {exc}"])
    samples = result["us_per_span"]
    if OURS not in samples:
        return unavailable_row(name, "CPU us/span", target, f"n/a (not available): {result.get('unavailable')}")
    return Row(
        name=name,
        unit="CPU us/span",
        target=target,
        samples={c: samples[c] for c in (NONE, STOCK, OURS)},
        notes={"rounds": rounds, "exported": result.get("exported"), "wall_us": result.get("wall_us_per_span")},
    )


def run(bench: Bench) -> list[Row]:
    receiver = shared_receiver("healthy")
    return [_row(bench, receiver, exporter, title) for exporter, title in EXPORTERS]


if __name__ == "__main__":
    main_single(run)
