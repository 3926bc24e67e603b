"""What the distro's ``sitecustomize.py`` runs at interpreter start-up.

Order: the program's folder on ``sys.path`` where ``opentelemetry-instrument``
puts it; the start-up sequence (:mod:`otel_gevent_distro.startup.sequence`) up to
the defaults (patch, preload, integrations) before anything of OpenTelemetry
is imported; select this distro and configurator unless the
user chose others; run OpenTelemetry's auto-instrumentation; then chain to
the next ``sitecustomize`` found later on ``sys.path`` (Debian ships one),
which Python would otherwise never run. Nothing here raises into the program.

Also says where that ``sitecustomize.py`` is (:func:`sitecustomize_path`,
for ``otel-gevent-distro sitecustomize-path`` and the doctor).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
from pathlib import Path

from otel_gevent_distro._log import PREFIX, logger

#: Set while start-up runs, so a Python child spawned during it does not start again.
_GUARD = "_OTEL_GEVENT_DISTRO_STARTING"
_UPSTREAM_PATCH = "OTEL_PYTHON_AUTO_INSTRUMENTATION_EXPERIMENTAL_GEVENT_PATCH"


def sitecustomize_path() -> Path:
    """The folder holding the distro's ``sitecustomize.py``.

    In a wheel it ships inside the package; in a source checkout it is the
    repository's top-level ``sitecustomize`` folder.
    """
    package = Path(__file__).resolve().parent.parent
    shipped = package / "sitecustomize"
    if (shipped / "sitecustomize.py").is_file():
        return shipped
    return package.parent / "sitecustomize"


def run_sitecustomize(sitecustomize_file: str) -> None:
    """Start telemetry for this interpreter, then run the next ``sitecustomize``."""
    own_folder = Path(sitecustomize_file).resolve().parent
    try:
        put_program_folder_on_path(own_folder)
    except Exception:  # noqa: BLE001 - never take the application down
        logger.exception("%scould not put the working folder on sys.path.", PREFIX)
    if not os.environ.get(_GUARD) and not _is_the_distros_own_command():
        os.environ[_GUARD] = "1"
        try:
            _start()
        except Exception:  # noqa: BLE001 - never take the application down
            logger.exception("%sstart-up failed; the application runs without telemetry.", PREFIX)
        finally:
            os.environ.pop(_GUARD, None)
    chain_next_sitecustomize(own_folder)


def _is_the_distros_own_command() -> bool:
    """``otel-gevent-distro doctor`` and friends: they inspect telemetry, they make none.

    With the folder on ``PYTHONPATH`` the command's own interpreter would
    otherwise start the SDK and export its health metrics at exit (to a
    collector that may not answer, for the whole exit budget).
    """
    argv = list(getattr(sys, "orig_argv", None) or sys.argv)
    if any(Path(arg).name == "otel-gevent-distro" for arg in argv[:2]):
        return True
    return any(argv[i] == "-m" and argv[i + 1] == "otel_gevent_distro.cli" for i in range(len(argv) - 1))


def put_program_folder_on_path(own_folder: Path) -> None:
    """Give the program the ``sys.path`` that ``opentelemetry-instrument`` gives it.

    ``opentelemetry-instrument`` starts the program with the working folder on
    ``PYTHONPATH`` right after its own folder (unless ``PYTHONPATH`` has it
    already), so instrumentors that import the program's modules while
    start-up runs (Django's reads ``DJANGO_SETTINGS_MODULE``) find them. Python
    adds the script's folder to ``sys.path`` only after ``sitecustomize``, and
    a console script (``gunicorn``) never adds the working folder at all: the
    same entry goes in here, right after this ``sitecustomize``'s folder.
    """
    try:
        program_folder = os.getcwd()
    except OSError:  # the working folder was removed
        return
    listed = [os.path.abspath(entry) for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if program_folder in listed:
        return
    position = 0
    for index, entry in enumerate(sys.path):
        if _same_folder(entry, own_folder):
            position = index + 1
            break
    sys.path.insert(position, program_folder)


def _same_folder(entry: str, folder: Path) -> bool:
    try:
        return Path(entry or ".").resolve() == folder
    except OSError:
        return False


def _start() -> None:
    from otel_gevent_distro.runtime.gevent_state import is_patched
    from otel_gevent_distro.startup.defaults import remember_user_environment
    from otel_gevent_distro.startup.sequence import start

    remember_user_environment()
    # The steps before the SDK; the defaults and the SDK follow when
    # auto-instrumentation runs the gevent distro or configurator.
    start(defaults=False)
    os.environ.setdefault("OTEL_PYTHON_DISTRO", "gevent")
    os.environ.setdefault("OTEL_PYTHON_CONFIGURATOR", "gevent")
    try:
        from opentelemetry.instrumentation.auto_instrumentation import initialize
    except ImportError as exc:
        logger.warning(
            "%sopentelemetry-instrumentation cannot be imported (%s); the application runs without telemetry.",
            PREFIX,
            exc,
        )
        return
    # Already patched: stop upstream's experimental switch from patching again
    # with other arguments (it would undo OTEL_PYTHON_GEVENT_PATCH_EXCLUDE).
    upstream_patch = os.environ.pop(_UPSTREAM_PATCH, None) if is_patched() else None
    try:
        initialize()
    finally:
        if upstream_patch is not None:
            os.environ[_UPSTREAM_PATCH] = upstream_patch


def chain_next_sitecustomize(own_folder: Path) -> None:
    """Execute the first ``sitecustomize`` on ``sys.path`` after ``own_folder``."""
    entries = [entry for entry in sys.path if entry]
    later = _entries_after(entries, own_folder)
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", later)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception:  # noqa: BLE001 - someone else's sitecustomize
        logger.exception("%sthe next sitecustomize (%s) failed.", PREFIX, spec.origin)


def _entries_after(entries: list[str], own_folder: Path) -> list[str]:
    for index, entry in enumerate(entries):
        if _same_folder(entry, own_folder):
            return entries[index + 1 :]
    return [entry for entry in entries if _resolves_elsewhere(entry, own_folder)]


def _resolves_elsewhere(entry: str, own_folder: Path) -> bool:
    try:
        return Path(entry).resolve() != own_folder
    except OSError:
        return False
