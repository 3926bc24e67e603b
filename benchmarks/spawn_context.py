"""Row 6, context propagation: the cost of ``gevent.spawn`` with the greenlet instrumentor on.

``apps/spawn_cost.py`` runs in one plain, patched process with an SDK tracer
provider, and measures spawning and joining greenlets inside an active span
with ``otel_gevent_distro.instrumentation.GeventInstrumentor`` off (column
``stock``: nothing public carries context into greenlets) and on (column
``ours``), switching between batches. n/a until the instrumentor exists.
No target: the row shows the price of correct parent spans.
"""

from __future__ import annotations

from harness import (
    APPS_DIR,
    NONE,
    OURS,
    PYTHON,
    STOCK,
    Bench,
    Row,
    Target,
    launch,
    log,
    main_single,
    run_child,
    unavailable_row,
)

NAME = "gevent.spawn+join in a span, greenlet instrumentor off vs on"


def run(bench: Bench) -> list[Row]:
    target = Target("info")
    rounds = bench.pick(3, 15)
    program = [PYTHON, str(APPS_DIR / "spawn_cost.py"), "--rounds", str(rounds)]
    command, env = launch(NONE, program)
    log(f"context propagation: {rounds} rounds in one process")
    try:
        result = run_child(command, env, timeout=300, cwd=APPS_DIR).last_json()
    except Exception as exc:  # noqa: BLE001 - report the row as failed, go on with the others
        return [Row(name=NAME, unit="CPU us/spawn", target=target, errors=[f"{type(exc).__name__}: {exc}"])]
    if "us_per_spawn" not in result:
        return [unavailable_row(NAME, "CPU us/spawn", target, f"n/a (not available): {result.get('unavailable')}")]
    samples = result["us_per_spawn"]
    return [
        Row(
            name=NAME,
            unit="CPU us/spawn",
            target=target,
            samples={STOCK: samples["off"], OURS: samples["on"]},
            notes={"children_with_parent": result.get("propagated"), "rounds": rounds, "columns": "stock=off, ours=on"},
        )
    ]


if __name__ == "__main__":
    main_single(run)
