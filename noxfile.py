"""Test matrix: the suite on the oldest and newest supported gevent, on two Pythons.

``nox`` runs ``lint`` and every ``tests`` cell; ``nox -s tests`` only the
matrix. Interpreters come from PATH or, failing that, from pyenv's versions
folder, so a machine with pyenv needs no ``pyenv global`` juggling.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYTHONS = ["3.11", "3.12"]
GEVENTS = ["24.2.1", "latest"]
SERVER_DEPS = [
    "gunicorn",
    "flask",
    "requests",
    "uwsgi",
    "celery[redis]",
    "redis",
    "opentelemetry-instrumentation-flask",
    "opentelemetry-instrumentation-requests",
    "opentelemetry-instrumentation-celery",
    "opentelemetry-instrumentation-threading",
    "psycopg2-binary",
    "psycogreen",
]


def _pyenv_bins() -> list[str]:
    try:
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    return [str(p.parent) for p in sorted(Path(root).glob("versions/3.*/bin/python3"))]


# Put real interpreters before pyenv's shims, which refuse versions not selected.
os.environ["PATH"] = os.pathsep.join([*_pyenv_bins(), os.environ.get("PATH", "")])


@nox.session(python=PYTHONS[-1])
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy."""
    session.install("-e", ".[otlp,test,lint]")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHONS)
@nox.parametrize("gevent", GEVENTS)
def tests(session: nox.Session, gevent: str) -> None:
    """The whole suite against the installed wheel, for one Python and one gevent."""
    pin = "gevent" if gevent == "latest" else f"gevent=={gevent}"
    session.install(".[otlp,test]", pin, *SERVER_DEPS)
    session.run("python", "-c", "import gevent, sys; print('gevent', gevent.__version__, 'python', sys.version)")
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)
