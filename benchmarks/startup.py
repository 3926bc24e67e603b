"""Row 4, start-up: ``python -c pass`` through each launch path, and its peak memory.

Contenders: ``none`` (plain ``python -c pass``), ``stock`` and ``ours`` through
``opentelemetry-instrument``, and ``ours`` through the sitecustomize folder
(``PYTHONPATH=$(otel-gevent-distro sitecustomize-path)``), compared with the
same stock figures. Every signal exports over OTLP/HTTP to a healthy receiver,
so the figures include building the SDK and the shutdown at exit.

Each run goes through a tiny launcher (``python -I -S``) that forks, execs
the command and reads ``wait4``: wall time from fork to exit, CPU time (user
+ system, the steadier figure on a busy machine) and peak memory
(``ru_maxrss``). Linux carries a process's peak memory across ``exec``, so
forking from the benchmark's own, larger process would report its size for
the floor; the launcher is smaller than any contender.
"""

from __future__ import annotations

from functools import partial

from harness import (
    NONE,
    OURS,
    OURS_SITE,
    PYTHON,
    STOCK,
    Bench,
    Receiver,
    Row,
    Target,
    interleave,
    launch,
    main_single,
    rows_from,
    run_child,
    shared_receiver,
)

SETTINGS = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "otlp", "OTEL_LOGS_EXPORTER": "otlp"}


LAUNCHER = """
import json, os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - start
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "wall": wall,
                  "cpu": usage.ru_utime + usage.ru_stime, "maxrss_kb": usage.ru_maxrss}))
"""


def _measure(receiver: Receiver, contender: str) -> dict[str, float]:
    command, env = launch(contender, [PYTHON, "-c", "pass"], {**SETTINGS, **receiver.env("http/protobuf")})
    done = run_child([PYTHON, "-I", "-S", "-c", LAUNCHER, *command], env, timeout=120)
    result = done.last_json()
    if result["code"] != 0:
        raise RuntimeError(f"exit {result['code']}: {done.stderr[-400:]}")
    return {"wall": result["wall"], "cpu": result["cpu"], "rss": result["maxrss_kb"] / 1024}


def run(bench: Bench) -> list[Row]:
    rounds = bench.pick(1, 5)
    measure = partial(_measure, shared_receiver("healthy"))
    samples, errors = interleave([NONE, STOCK, OURS, OURS_SITE], rounds, measure, "start-up")
    limit = Target("ratio<=", 1.05)
    instrument = rows_from(
        samples,
        (
            ("wall", "start-up, opentelemetry-instrument", "s", limit),
            ("cpu", "start-up CPU, opentelemetry-instrument", "s", limit),
            ("rss", "peak memory, opentelemetry-instrument", "MB", limit),
        ),
        errors,
    )
    site = rows_from(
        samples,
        (
            ("wall", "start-up, sitecustomize folder (ours) vs stock", "s", limit),
            ("cpu", "start-up CPU, sitecustomize folder (ours) vs stock", "s", limit),
            ("rss", "peak memory, sitecustomize folder (ours) vs stock", "MB", limit),
        ),
        errors,
        columns={OURS: OURS_SITE},
    )
    return [row for pair in zip(instrument, site, strict=True) for row in pair]


if __name__ == "__main__":
    main_single(run)
