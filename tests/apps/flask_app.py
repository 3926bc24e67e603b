"""A gevent Flask application as a user writes it: the front handler calls a second endpoint.

``GET /front/<n>`` makes an outgoing ``requests`` call to ``GET /back/<n>``
on the same server and answers with the pid of the worker that served it.
``GET /back/<n>`` hands a note to a background greenlet and runs a tiny
subprocess, as handlers that shell out do: a fork in the middle of serving,
with other greenlets ready to run. When ``APP_NOTES`` names a file, each note
is appended to it with the pid that wrote it, so a test can prove that no
greenlet of the server ever ran in a forked child.
``GET /healthz`` is for readiness probes (the tests exclude it from tracing).
Nothing here mentions OpenTelemetry: the launch path brings it.
"""

import os
import subprocess

import gevent
import requests
from flask import Flask, request

app = Flask(__name__)
NOTES = os.environ.get("APP_NOTES")


def note(n: int) -> None:
    if NOTES:
        with open(NOTES, "a") as notes:
            notes.write(f"{os.getpid()} {n}\n")


@app.get("/healthz")
def healthz() -> dict[str, int]:
    return {"pid": os.getpid()}


@app.get("/front/<int:n>")
def front(n: int) -> dict[str, int]:
    answer = requests.get(f"{request.host_url}back/{n}", timeout=10)
    answer.raise_for_status()
    return {"n": n, "pid": os.getpid(), "back_pid": answer.json()["pid"]}


@app.get("/back/<int:n>")
def back(n: int) -> dict[str, int]:
    gevent.spawn(note, n)
    subprocess.run(["true"], check=True)
    return {"n": n, "pid": os.getpid()}
