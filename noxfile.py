"""Test matrix: every claimed Python, both ends of gevent, and the oldest OpenTelemetry.

``nox`` runs ``lint`` and every ``tests`` cell; ``nox -s tests`` only the
matrix; ``nox -s "tests(3.13-gevent-24.10.3)"`` one cell (``nox -l`` lists them);
``nox -s canaries`` the upstream canaries, which do not gate (tests/conftest.py).

The package claims Python 3.10-3.13, gevent 24.2.1 or newer (24.10.3 or newer
on Python 3.13, the first gevent with 3.13 wheels; 24.2.1 has none there) and
opentelemetry-sdk 1.40 / instrumentation 0.61b0 or newer. Not every product of
those runs: each cell costs a few minutes on a 2-core machine. The cells are

============  ===============  =============================================
Python        gevent           why
============  ===============  =============================================
3.10          24.2.1           oldest Python with the oldest gevent
3.11          newest           the Python the benchmarks use
3.12          newest           newest gevent on 3.12
3.13          24.10.3          oldest gevent that works on 3.13
3.13          newest           newest Python with the newest gevent
3.12          newest           oldest OpenTelemetry the package allows
                               (SDK/API/exporters 1.40, instrumentation and
                               distro 0.61b0, their instrumentations 0.61b0)
============  ===============  =============================================

so every claimed Python runs, the newest gevent on three Pythons, the oldest
gevent wherever it differs (24.2.1 is the floor up to 3.12, 24.10.3 on 3.13),
and the OpenTelemetry floor once. 24.2.1 on 3.11/3.12 is left out to keep the
run short: about 4-6 minutes a cell on a 2-core machine, so six cells
and lint stay near half an hour. ``noxfile.py`` is the place to
change when a claim changes: pyproject's ``requires-python``, the per-Python
gevent minimums (environment markers) and README's "Install" section say the
same.

Interpreters come from pyenv's versions folder when it has them (linked into
``.nox/.interpreters``), else from ``python3.X`` on PATH, so a machine with
pyenv needs no ``pyenv global`` juggling. Development dependencies are PEP 735
dependency groups of ``pyproject.toml`` (``test``, ``lint``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nox  # 2025.2.9 or later: nox.project.dependency_groups

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LATEST = "newest"
OLD_OTEL = "1.40"
#: gunicorn 24 and later refuse gevent older than 24.10.1; with greenlet 3.5.1 and
#: later, gevent 24.2.1 and 24.10.x print "RuntimeError: greenlet is being finalized"
#: (after "Exception ignored in") at exit.
OLD_GEVENT_PINS = {"24.2.1": ["gunicorn<24", "greenlet<=3.5.0"], "24.10.3": ["greenlet<=3.5.0"]}
#: The oldest OpenTelemetry the package allows, and the instrumentations of that release.
OLD_OTEL_PINS = [
    "opentelemetry-api==1.40.*",
    "opentelemetry-sdk==1.40.*",
    "opentelemetry-proto==1.40.*",
    "opentelemetry-exporter-otlp==1.40.*",
    "opentelemetry-exporter-otlp-proto-http==1.40.*",
    "opentelemetry-exporter-otlp-proto-grpc==1.40.*",
    "opentelemetry-semantic-conventions==0.61b0",
    "opentelemetry-instrumentation==0.61b0",
    "opentelemetry-distro==0.61b0",
    "opentelemetry-instrumentation-flask==0.61b0",
    "opentelemetry-instrumentation-requests==0.61b0",
    "opentelemetry-instrumentation-celery==0.61b0",
    "opentelemetry-instrumentation-threading==0.61b0",
]
#: (Python, gevent, OpenTelemetry): the table of the docstring.
CELLS = [
    ("3.10", "24.2.1", LATEST),
    ("3.11", LATEST, LATEST),
    ("3.12", LATEST, LATEST),
    ("3.13", "24.10.3", LATEST),
    ("3.13", LATEST, LATEST),
    ("3.12", LATEST, OLD_OTEL),
]


def _cell_id(python: str, gevent: str, otel: str) -> str:
    name = f"{python}-gevent-{gevent}"
    return name if otel == LATEST else f"{name}-otel-{otel}"


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


@nox.session(python="3.12")
def lint(session: nox.Session) -> None:
    """ruff (lint and format) and mypy."""
    groups = nox.project.dependency_groups(PYPROJECT, "test", "lint")
    session.install("-e", ".[otlp]", *groups)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy")


@nox.session
@nox.parametrize(
    ("python", "gevent", "otel"),
    [nox.param(*cell, id=_cell_id(*cell)) for cell in CELLS],
)
def tests(session: nox.Session, gevent: str, otel: str) -> None:
    """The whole suite against the installed wheel, for one cell of the matrix."""
    pins = ["gevent"] if gevent == LATEST else [f"gevent=={gevent}", *OLD_GEVENT_PINS[gevent]]
    if otel != LATEST:
        pins += OLD_OTEL_PINS
    session.install(".[otlp]", *nox.project.dependency_groups(PYPROJECT, "test"), *pins)
    session.run(
        "python",
        "-c",
        "import gevent, sys; from importlib.metadata import version; "
        "print('gevent', gevent.__version__, 'opentelemetry-sdk', version('opentelemetry-sdk'), 'python', sys.version)",
    )
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session(python="3.12")
def canaries(session: nox.Session) -> None:
    """Upstream canaries (``-m canary``), newest gevent: not gating, so not in the default sessions."""
    session.install(".[otlp]", *nox.project.dependency_groups(PYPROJECT, "test"), "gevent")
    session.run("pytest", "-p", "no:cacheprovider", "-m", "canary", *session.posargs)
