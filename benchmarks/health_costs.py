"""Health costs: what the greenlet instrumentor, the greenlet count and gevent's monitor thread cost.

Each measurement compares its states side by side in one run, alternating:

* **spawn+join** (``apps/health_cost.py --measure spawn``, one plain patched
  process, ``GEVENT_MONITOR_THREAD_ENABLE=false``): greenlets that do nothing,
  with nothing on, with ``GeventInstrumentor`` on without and with an active
  span, and with the distro's health monitoring started (its greenlet count's
  spawn callback), the state switched between batches, rotating which goes
  first. Process CPU µs per greenlet, its release included.
* **gevent.sleep(0)** (``apps/health_cost.py --measure switch``): one round
  trip to the hub, gevent's monitor thread off and on, and the distro's
  parking monitor (``--parking``); then the same three with a one-byte
  socket ping-pong between two greenlets instead (``--io``), where the hub
  polls twice per round trip: what the parking monitor's two loop callbacks
  cost. A monitor thread that
  was killed cannot be started again through gevent's public API, so each
  state is a child process of its own, set by gevent's own
  ``GEVENT_MONITOR_THREAD_ENABLE`` (false / true); the children alternate,
  rotating which goes first, and each gives the median of its batches.
* **idle CPU** (``apps/idler.py``): a patched process that only sleeps, as
  ``none``, ``stock`` and ``ours`` start it (``harness.launch``), ours with
  health on (the default: the distro's parking monitor,
  ``GEVENT_MAX_BLOCKING_TIME`` unset: 0.1 s), with
  ``OTEL_PYTHON_GEVENT_HEALTH=false``, with gevent's monitor thread kept off
  (``GEVENT_MONITOR_THREAD_ENABLE=false``: the lag probe and the count only),
  with gevent's own monitor thread instead of the parking one
  (``GEVENT_MONITOR_THREAD_ENABLE=true``), at 0.1 s and at
  ``GEVENT_MAX_BLOCKING_TIME=1.0``; every signal exports over
  OTLP/HTTP to the shared healthy receiver, with the periodic metric export
  moved out of the window (``OTEL_METRIC_EXPORT_INTERVAL`` 10 minutes, for
  all alike). All of them start together each round (in a rotating order),
  wait until all are ready, then measure the same seconds: the child's own
  ``time.process_time()`` over ``IDLE_WINDOW`` seconds after a warm-up
  second, as milliseconds of CPU per second (1 ms/s is 0.1 % of one core).

Derived rows give the paired differences (one per round: the state minus its
baseline measured in the same round), whose median is the extra cost.

Not part of the default ``run.py`` table (it adds minutes):
``python benchmarks/run.py --only health_costs`` or ``python benchmarks/health_costs.py``.
The figures in ``docs/health-and-context.md`` come from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from typing import IO, Any

from harness import (
    APPS_DIR,
    NONE,
    OURS,
    PYTHON,
    STOCK,
    Bench,
    Row,
    Target,
    interleave,
    launch,
    log,
    main_single,
    run_child,
    shared_receiver,
    stop_process,
)

INFO = Target("info")
SPAWN_UNIT = "CPU us/spawn"
SWITCH_UNIT = "CPU us/switch"
#: Milliseconds of CPU per second of the window: 1 ms/s is 0.1 % of one core.
IDLE_UNIT = "CPU ms/s"
#: Seconds of each idle window (after a warm-up second).
IDLE_WINDOW = 20.0

MONITOR_OFF, MONITOR_ON, PARKING = "monitor-off", "monitor-on", "parking-monitor"
IO_OFF, IO_ON, IO_PARKING = "io-monitor-off", "io-monitor-on", "io-parking-monitor"
HEALTH_OFF, NO_MONITOR = "ours-health-off", "ours-monitor-thread-off"
GEVENTS_MONITOR, BLOCKING_10 = "ours-gevents-monitor", "ours-gevents-monitor-mbt-1.0"
#: Idle state -> (launch contender, its own settings).
IDLE_STATES: dict[str, tuple[str, dict[str, str]]] = {
    NONE: (NONE, {}),
    STOCK: (STOCK, {}),
    OURS: (OURS, {}),
    HEALTH_OFF: (OURS, {"OTEL_PYTHON_GEVENT_HEALTH": "false"}),
    NO_MONITOR: (OURS, {"GEVENT_MONITOR_THREAD_ENABLE": "false"}),
    GEVENTS_MONITOR: (OURS, {"GEVENT_MONITOR_THREAD_ENABLE": "true"}),
    BLOCKING_10: (OURS, {"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "1.0"}),
}
SIGNALS = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp"}
#: The periodic metric export (60 s by default) out of every idle window, for every contender alike.
IDLE_SETTINGS = {**SIGNALS, "OTEL_METRIC_EXPORT_INTERVAL": "600000"}


def paired(values: list[float], baseline: list[float]) -> list[float]:
    """``values[i] - baseline[i]`` for each round, or nothing when a round is missing from one."""
    if not values or len(values) != len(baseline):
        return []
    return [value - base for value, base in zip(values, baseline, strict=True)]


def _failed(names: list[tuple[str, str]], error: str) -> list[Row]:
    return [Row(name=name, unit=unit, target=INFO, errors=[error]) for name, unit in names]


# --------------------------------------------------------------------------
# spawn+join: instrumentor and greenlet count, in one process
# --------------------------------------------------------------------------

SPAWN_ROWS = (
    ("context", "plain", "gevent.spawn+join, greenlet instrumentor on, no span active"),
    ("context-span", "plain-span", "gevent.spawn+join, greenlet instrumentor on, a span active"),
    ("count", "plain", "gevent.spawn+join, health monitoring started (greenlet count)"),
)


def spawn_rows(bench: Bench) -> list[Row]:
    rounds = bench.pick(12, 40)
    program = [PYTHON, str(APPS_DIR / "health_cost.py"), "--measure", "spawn", "--rounds", str(rounds)]
    program += ["--greenlets", "2000"]
    command, env = launch(NONE, program, {"GEVENT_MONITOR_THREAD_ENABLE": "false"})
    log(f"health costs, spawn+join: {rounds} rounds of 5 states in one process")
    names = [(name, SPAWN_UNIT) for _, _, name in SPAWN_ROWS] + [
        (f"{name}: extra per spawn", SPAWN_UNIT) for _, _, name in SPAWN_ROWS
    ]
    try:
        result = run_child(command, env, timeout=300, cwd=APPS_DIR).last_json()
    except Exception as exc:  # noqa: BLE001 - report the rows as failed, go on with the others
        return _failed(names, f"{type(exc).__name__}: {exc}")
    samples: dict[str, list[float]] = result["us_per_spawn"]
    notes = {
        "rounds": rounds,
        "greenlets_per_batch": 2000,
        "children_with_parent": result.get("propagated"),
        "count_saw_of_100": result.get("count_saw_of_100"),
        "count_reports_blocking": result.get("count_reports_blocking"),
    }
    rows = [
        Row(
            name=name,
            unit=SPAWN_UNIT,
            target=INFO,
            samples={state: samples[state], base: samples[base]},
            columns={STOCK: base, OURS: state},
            notes=notes,
        )
        for state, base, name in SPAWN_ROWS
    ]
    rows += [
        Row(
            name=f"{name}: extra per spawn",
            unit=SPAWN_UNIT,
            target=INFO,
            samples={f"{state}-minus-{base}": paired(samples[state], samples[base])},
            columns={OURS: f"{state}-minus-{base}"},
            notes={"paired": "per round, the state's batch minus the baseline's batch of the same round"},
        )
        for state, base, name in SPAWN_ROWS
    ]
    return rows


# --------------------------------------------------------------------------
# gevent.sleep(0): gevent's monitor thread off and on, one child process each
# --------------------------------------------------------------------------

SWITCH_NAME = "gevent.sleep(0) round trip, gevent monitor thread off vs on"
#: Switch state -> (gevent's monitor thread on, the distro's parking monitor, socket ping-pong).
SWITCH_STATES = {
    MONITOR_OFF: (False, False, False),
    MONITOR_ON: (True, False, False),
    PARKING: (False, True, False),
    IO_OFF: (False, False, True),
    IO_ON: (True, False, True),
    IO_PARKING: (False, True, True),
}


def _measure_switch(facts: dict[str, list[Any]], state: str) -> dict[str, float]:
    gevents, parking, io = SWITCH_STATES[state]
    program = [PYTHON, str(APPS_DIR / "health_cost.py"), "--measure", "switch"]
    program += ["--parking"] * parking + ["--io"] * io
    command, env = launch(NONE, program, {"GEVENT_MONITOR_THREAD_ENABLE": "true" if gevents else "false"})
    result = run_child(command, env, timeout=120, cwd=APPS_DIR).last_json()
    monitoring = gevents or parking
    if result["monitor_thread"] != monitoring or result["switch_tracer"] != monitoring or result["parking"] != parking:
        raise RuntimeError(f"{state}: monitor thread {result['monitor_thread']}, tracer {result['switch_tracer']}")
    facts.setdefault(state, []).append(result["batches"])
    return {"us": result["us_per_switch"]}


def switch_rows(bench: Bench) -> list[Row]:
    rounds = bench.pick(4, 10)
    batches: dict[str, list[Any]] = {}
    samples, errors = interleave(list(SWITCH_STATES), rounds, partial(_measure_switch, batches), "switch")
    us = samples.get("us", {})
    notes = {"rounds": rounds, "switches_per_batch": 20000, "batches_of_each_child": batches}

    def row(name: str, columns: dict[str, str], **extra: Any) -> Row:
        return Row(name=name, unit=SWITCH_UNIT, target=INFO, samples=us, columns=columns, errors=errors, **extra)

    def extra(name: str, state: str, baseline: str) -> Row:
        key = f"{state}-minus-{baseline}"
        return Row(
            name=name,
            unit=SWITCH_UNIT,
            target=INFO,
            samples={key: paired(us.get(state, []), us.get(baseline, []))},
            columns={OURS: key},
            errors=errors,
        )

    return [
        row(SWITCH_NAME, {STOCK: MONITOR_OFF, OURS: MONITOR_ON}, notes=notes),
        extra("gevent.sleep(0) round trip: extra with gevent's monitor thread on", MONITOR_ON, MONITOR_OFF),
        row(
            "gevent.sleep(0) round trip, gevent's monitor thread vs the parking monitor",
            {STOCK: MONITOR_ON, OURS: PARKING},
        ),
        extra("gevent.sleep(0) round trip: extra with the parking monitor", PARKING, MONITOR_OFF),
        row("socket ping-pong (two polls), gevent monitor thread off vs on", {STOCK: IO_OFF, OURS: IO_ON}),
        extra("socket ping-pong: extra with gevent's monitor thread on", IO_ON, IO_OFF),
        row("socket ping-pong, gevent's monitor thread vs the parking monitor", {STOCK: IO_ON, OURS: IO_PARKING}),
        extra("socket ping-pong: extra with the parking monitor", IO_PARKING, IO_OFF),
    ]


# --------------------------------------------------------------------------
# Idle CPU: all launches at once, the same seconds measured
# --------------------------------------------------------------------------


@dataclass
class _Idler:
    """One idle program of a round: the process, its stderr file, what it printed so far."""

    proc: subprocess.Popen
    stderr: IO[bytes]
    output: bytearray = field(default_factory=bytearray)

    def read_some(self) -> bool:
        """Append what the program printed; False at the end of its output."""
        assert self.proc.stdout is not None
        chunk = os.read(self.proc.stdout.fileno(), 65536)
        self.output.extend(chunk)
        return bool(chunk)

    def result(self) -> dict[str, Any]:
        lines = [line for line in self.output.decode(errors="replace").splitlines() if line.startswith("{")]
        if lines:
            return dict(json.loads(lines[-1]))
        self.stderr.seek(0)
        tail = self.stderr.read().decode(errors="replace").strip().splitlines()[-5:]
        raise RuntimeError(f"no result (exit {self.proc.returncode}): {' | '.join(tail)}")

    def stop(self) -> None:
        stop_process(self.proc, grace=5)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def _wait_until_ready(idlers: dict[str, _Idler], timeout: float) -> set[str]:
    """Read each program's output until it printed ``ready`` (or ended); return those still not ready."""
    deadline = time.monotonic() + timeout
    waiting = set(idlers)
    while waiting and time.monotonic() < deadline:
        streams = {idlers[state].proc.stdout: state for state in waiting}
        ready, _, _ = select.select(list(streams), [], [], 1.0)
        for stream in ready:
            idler = idlers[streams[stream]]
            if not idler.read_some() or b"ready\n" in idler.output:
                waiting.discard(streams[stream])
    return waiting


def _idle_round(order: list[str], env: dict[str, str], timeout: float) -> tuple[dict[str, dict], list[str]]:
    """Start every state of ``order``, let them go together once all are ready, collect their JSON."""
    program = [PYTHON, str(APPS_DIR / "idler.py"), "--window", str(IDLE_WINDOW), "--warmup", "1"]
    results: dict[str, dict] = {}
    errors: list[str] = []
    idlers: dict[str, _Idler] = {}
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [idler.stop() for idler in idlers.values()])
        for state in order:
            contender, own = IDLE_STATES[state]
            command, full_env = launch(contender, program, {**env, **own})
            stderr = stack.enter_context(tempfile.TemporaryFile())
            pipe = subprocess.PIPE
            proc = subprocess.Popen(command, env=full_env, cwd=APPS_DIR, stdin=pipe, stdout=pipe, stderr=stderr)
            idlers[state] = _Idler(proc, stderr)
        not_ready = _wait_until_ready(idlers, timeout)
        for idler in idlers.values():  # the go, for all at once: their stdin closes
            assert idler.proc.stdin is not None
            with contextlib.suppress(OSError):
                idler.proc.stdin.close()
        log(f"idle CPU: {len(order) - len(not_ready)} of {len(order)} ready, {IDLE_WINDOW:g} s window")
        finish_by = time.monotonic() + IDLE_WINDOW + 60
        for state, idler in idlers.items():
            try:
                idler.proc.wait(max(1.0, finish_by - time.monotonic()))
                while idler.read_some():
                    pass
                results[state] = idler.result()
            except (subprocess.TimeoutExpired, RuntimeError, ValueError) as exc:
                errors.append(f"{state}: {type(exc).__name__}: {exc}")
    return results, errors


IDLE_ROWS = (
    ((NONE, STOCK, OURS), f"idle CPU, {IDLE_WINDOW:g} s of gevent.sleep (ours: health on, the default)"),
    ((NONE, STOCK, HEALTH_OFF), "idle CPU, ours with OTEL_PYTHON_GEVENT_HEALTH=false"),
    ((None, OURS, NO_MONITOR), "idle CPU, ours, GEVENT_MONITOR_THREAD_ENABLE=false (stock column: ours)"),
    ((None, OURS, GEVENTS_MONITOR), "idle CPU, ours with gevent's own monitor thread (stock column: ours, parking)"),
    ((None, OURS, BLOCKING_10), "idle CPU, ours, gevent's monitor at GEVENT_MAX_BLOCKING_TIME=1.0 (stock: ours)"),
)


def idle_rows(bench: Bench) -> list[Row]:
    rounds = bench.pick(2, 5)
    env = {**IDLE_SETTINGS, **shared_receiver("healthy").env("http/protobuf")}
    states = list(IDLE_STATES)
    samples: dict[str, list[float]] = {state: [] for state in states}
    facts: dict[str, list[dict[str, Any]]] = {state: [] for state in states}
    differences: list[float] = []
    errors: list[str] = []
    for number in range(rounds):
        shift = number % len(states)
        order = [*states[shift:], *states[:shift]]
        log(f"idle CPU round {number + 1}/{rounds}: {', '.join(order)} started together")
        results, failed = _idle_round(order, env, timeout=180)
        errors += failed
        for state, result in results.items():
            samples[state].append(float(result["cpu_ms_per_s"]))
            keep = ("cpu_s", "window_s", "waited_for_go_s", "os_threads", "monitor_thread", "max_blocking_time")
            facts[state].append({key: result.get(key) for key in keep} | {"processors": result.get("processors")})
        if OURS in results and HEALTH_OFF in results:
            differences.append(results[OURS]["cpu_ms_per_s"] - results[HEALTH_OFF]["cpu_ms_per_s"])
    notes: dict[str, Any] = {"rounds": rounds, "window_s": IDLE_WINDOW}
    rows: list[Row] = []
    for (none, stock, ours), name in IDLE_ROWS:
        columns = {STOCK: stock, OURS: ours} | ({NONE: none} if none else {})
        rows.append(
            Row(
                name=name,
                unit=IDLE_UNIT,
                target=INFO,
                samples={state: samples[state] for state in columns.values()},
                columns=columns,
                errors=errors,
                notes=dict(notes, runs=facts) if not rows else dict(notes),
            )
        )
    rows.append(
        Row(
            name="idle CPU the health monitor adds (ours, health on minus off)",
            unit=IDLE_UNIT,
            target=INFO,
            samples={"on-minus-off": differences},
            columns={OURS: "on-minus-off"},
            errors=errors,
            notes={"paired": "per round, health on minus health off, same window"},
        )
    )
    return rows


def run(bench: Bench) -> list[Row]:
    load_before = [round(value, 2) for value in os.getloadavg()]
    rows = [*spawn_rows(bench), *switch_rows(bench), *idle_rows(bench)]
    load_after = [round(value, 2) for value in os.getloadavg()]
    log(f"health costs: load average (1, 5, 15 min) {load_before} at the start, {load_after} at the end")
    for row in rows:
        row.notes["load_average"] = {"start": load_before, "end": load_after}
    return rows


if __name__ == "__main__":
    main_single(run)
