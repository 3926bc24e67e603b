"""Test matrix: the suite on the oldest and newest supported gevent, on two Pythons.

``nox`` runs ``lint`` and every ``tests`` cell; ``nox -s tests`` only the
matrix. Interpreters come from pyenv's versions folder when it has them
(linked into ``.nox/.interpreters``), else from ``python3.X`` on PATH, so a
machine with pyenv needs no ``pyenv global`` juggling. Development dependencies
are PEP 735 dependency groups of ``pyproject.toml`` (``test``, ``lint``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")

PYTHONS = ["3.11", "3.12"]
GEVENTS = ["24.2.1", "latest"]
#: gunicorn 24 and later refuse gevent older than 24.10.1; with greenlet 3.5.1 and
#: later, gevent 24.2.1 prints "RuntimeError: greenlet is being finalized" at exit.
OLD_GEVENT_PINS = ["gunicorn<24", "greenlet<=3.5.0"]


def _pyenv_root() -> Path:
    try:
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=True)
        return Path(done.stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv")))


def _expose_pyenv_interpreters() -> None:
    """Link ``python3.X`` of each wanted version into one folder put first on PATH.

    pyenv's shims refuse a version that is not selected; only the versioned
    names are linked, so ``python``/``python3`` keep meaning what they meant.
    """
    folder = Path(__file__).parent / ".nox" / ".interpreters"
    folder.mkdir(parents=True, exist_ok=True)
    for version in PYTHONS:
        candidates = sorted((_pyenv_root() / "versions").glob(f"{version}.*/bin/python{version}"))
        link = folder / f"python{version}"
        if candidates and not link.exists():
            link.symlink_to(candidates[-1])
    os.environ["PATH"] = os.pathsep.join([str(folder), os.environ.get("PATH", "")])


_expose_pyenv_interpreters()


@nox.session(python=PYTHONS[-1])
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy."""
    session.install("-e", ".[otlp]", *nox.project.dependency_groups(PYPROJECT, "test", "lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session(python=PYTHONS)
@nox.parametrize("gevent", GEVENTS)
def tests(session: nox.Session, gevent: str) -> None:
    """The whole suite against the installed wheel, for one Python and one gevent."""
    pins = ["gevent"] if gevent == "latest" else [f"gevent=={gevent}", *OLD_GEVENT_PINS]
    session.install(".[otlp]", *nox.project.dependency_groups(PYPROJECT, "test"), *pins)
    session.run("python", "-c", "import gevent, sys; print('gevent', gevent.__version__, 'python', sys.version)")
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)
