"""A small HTTP load generator, used when ``wrk`` is not installed.

``python benchmarks/loadgen.py HOST PORT --connections C --seconds S`` keeps C
keep-alive connections busy with ``GET /`` for S seconds (threads, one
connection each) and prints one JSON line: requests, errors, requests per
second and the p99 latency in milliseconds. Run it in its own process, away
from the server it loads.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import threading
import time


def _worker(host: str, port: int, deadline: float, latencies: list[float], errors: list[int]) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            ok = False
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=10)
        if ok:
            latencies.append(time.perf_counter() - start)
        else:
            errors.append(1)
    connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    deadline = start + args.seconds
    threads = [
        threading.Thread(target=_worker, args=(args.host, args.port, deadline, latencies, errors), daemon=True)
        for _ in range(args.connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(args.seconds + 15)
    elapsed = time.perf_counter() - start
    ordered = sorted(latencies)
    p99 = ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)] if ordered else 0.0
    result = {"requests": len(latencies), "errors": len(errors), "rps": len(latencies) / elapsed, "p99_ms": p99 * 1e3}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
