"""Run every benchmark row and print one table: this distro beside the stock setup.

    python benchmarks/run.py                  # full run, about 10 minutes
    BENCH_QUICK=1 python benchmarks/run.py    # fewer rounds, shorter loads: under 3 minutes
    python benchmarks/run.py --json out.json  # also save every sample
    python benchmarks/run.py --only hub_stall,startup
    python benchmarks/run.py --only health_costs   # a row left out of the default run
    python benchmarks/run.py --only ddtrace_reference  # beside dd-trace-py (installs it under build/)

Columns: ``none`` is the floor (no telemetry), ``stock`` is
``opentelemetry-distro`` through ``opentelemetry-instrument`` with upstream's
gevent ``patch_all`` switch, ``ours`` is ``OTEL_PYTHON_DISTRO=gevent``; each
cell is the median of the runs, and the runs of the contenders alternate.
See ``benchmarks/README.md`` for what each row measures.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import ddtrace_reference
import encode_cost
import health_costs
import hub_stall
import served_requests
import span_overhead
import spawn_context
import startup
import subprocess_rate
from harness import (
    REPO_ROOT,
    Bench,
    Row,
    Target,
    bench_from_environment,
    close_receivers,
    details,
    log,
    table,
    unavailable_row,
)

#: Row modules in the order of the table.
MODULES = {
    "hub_stall": hub_stall,
    "span_overhead": span_overhead,
    "subprocess_rate": subprocess_rate,
    "startup": startup,
    "served_requests": served_requests,
    "spawn_context": spawn_context,
    "encode_cost": encode_cost,
}
#: Row modules run only when ``--only`` names them (each adds minutes to the run).
ON_REQUEST = {
    "health_costs": health_costs,
    "ddtrace_reference": ddtrace_reference,
}
DISTRIBUTIONS = (
    "otel-gevent-distro",
    "gevent",
    "greenlet",
    "opentelemetry-sdk",
    "opentelemetry-instrumentation",
    "opentelemetry-distro",
    "opentelemetry-exporter-otlp-proto-grpc",
    "opentelemetry-exporter-otlp-proto-http",
    "opentelemetry-exporter-otlp-proto-common",
    "protobuf",
    "grpcio",
    "gunicorn",
    "flask",
    "opentelemetry-instrumentation-flask",
)


def _git(*args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def package_fingerprint() -> str:
    """A digest of the package's source files as they are on disk (what an editable install runs)."""
    digest = hashlib.sha256()
    for path in sorted((REPO_ROOT / "otel_gevent_distro").rglob("*.py")):
        digest.update(str(path.relative_to(REPO_ROOT)).encode())
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def code_state() -> dict[str, Any]:
    """The commit, the package files that differ from it, and the digest of what is on disk."""
    changed = [line[3:] for line in _git("status", "--porcelain", "--", "otel_gevent_distro").splitlines() if line]
    return {
        "commit": _git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted_package_files": changed,
        "package_fingerprint": package_fingerprint(),
    }


def environment_facts(before: dict[str, Any]) -> dict[str, Any]:
    """What the figures were measured on and with; ``before`` is :func:`code_state` at the start."""
    after = code_state()
    return {
        **before,
        "code_changed_during_run": after != before,
        "code_at_end": after,
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {name: _version(name) for name in DISTRIBUTIONS},
    }


def describe(facts: dict[str, Any], bench: Bench, seconds: float) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in facts["versions"].items())
    dirty = facts["uncommitted_package_files"]
    code = f"commit {facts['commit']}" + (f" plus uncommitted changes to {', '.join(dirty)}" if dirty else "")
    code += f" (package files digest {facts['package_fingerprint']})"
    if facts["code_changed_during_run"]:
        code += f"; WARNING: the package changed during the run (at the end: {facts['code_at_end']})"
    lines = [
        f"mode: {'quick (BENCH_QUICK=1)' if bench.quick else 'full'}; took {seconds:.0f} s",
        code,
        f"{facts['cpu']}, {facts['cores']} cores; Python {facts['python']}; {facts['platform']}",
        versions,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="FILE", help="also write every sample and the environment as JSON")
    parser.add_argument(
        "--only",
        default="",
        help=f"comma list of rows to run ({', '.join(MODULES)}; on request only: {', '.join(ON_REQUEST)})",
    )
    args = parser.parse_args(argv)
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(only) - set(MODULES) - set(ON_REQUEST))
    if unknown:
        parser.error(f"unknown rows: {', '.join(unknown)}")
    bench = bench_from_environment(only)

    started = time.perf_counter()
    before = code_state()
    rows: list[Row] = []
    for name, module in {**MODULES, **ON_REQUEST}.items():
        if (only or name in ON_REQUEST) and name not in only:
            continue
        log(f"row {name}")
        row_start = time.perf_counter()
        try:
            rows += module.run(bench)
        except Exception as exc:  # noqa: BLE001 - one broken row must not lose the table
            log(f"row {name} failed: {type(exc).__name__}: {exc}")
            rows.append(unavailable_row(name, "-", Target("info"), f"failed: {type(exc).__name__}: {exc}"))
        log(f"row {name} took {time.perf_counter() - row_start:.0f} s")
    received = close_receivers()
    seconds = time.perf_counter() - started

    facts = environment_facts(before)
    print(table(rows))
    print()
    print(describe(facts, bench, seconds))
    print()
    print("Samples (each run; the table shows their median):")
    print(details(rows))
    print(f"receivers counted: {json.dumps(received)}")
    if args.json:
        payload = {
            "environment": facts,
            "quick": bench.quick,
            "seconds": seconds,
            "command": " ".join(["python", "benchmarks/run.py", *(argv if argv is not None else sys.argv[1:])]),
            "receivers": received,
            "rows": [row.as_json() for row in rows],
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
