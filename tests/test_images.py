"""The container images' contents, built without Docker by the scripts the Dockerfiles run.

* ``docker/build-autoinstrumentation.sh`` fills the OpenTelemetry Operator's
  ``/autoinstrumentation`` folder. An application in a *separate* environment
  that has gevent but no OpenTelemetry then runs with the Operator's
  environment (``PYTHONPATH=<folder>/opentelemetry/instrumentation/auto_instrumentation:<folder>``
  and the Operator's ``OTEL_*`` variables): its spans must arrive and its
  stderr must be clean. Without gevent it must still run, with one line.
* ``docker/install-app-base.sh`` installs the distro into an application's
  Python and links its sitecustomize folder for ``PYTHONPATH``, as the
  application base image does.
* Building the folder changes nothing outside it. The builds run with a
  private uv cache, shared with a "victim" environment installed from it
  (uv hard-links files from its cache), and under ``umask 000``; the victim
  must be byte for byte, mode for mode what it was, and the folder must hold
  nothing group- or world-writable.

The folders and environments are built once per session from this checkout.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.launch import BIN, Result, clean_environment, write_app
from tests.receiver import OtlpReceiver

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
BUILD_TIMEOUT = 600
#: The application's own packages: the gevent (and greenlet) this suite runs with, and python-magic.
APP_PACKAGES = (f"gevent=={version('gevent')}", f"greenlet=={version('greenlet')}", "python-magic")
#: Left out of the folder so that the application's own copies are used.
NOT_IN_FOLDER = ("gevent", "greenlet", "zope")

REPORTED_CASE = """
    import gevent.monkey
    gevent.monkey.patch_all()

    import subprocess
    import magic
    from opentelemetry import trace

    tracer = trace.get_tracer("image-app")
    with tracer.start_as_current_span("image-app") as span:
        span.set_attribute("mime", magic.from_buffer(b"%PDF-1.4 test", mime=True))
        subprocess.run(["true"], check=True)
    print("done")
"""

NO_GEVENT_APP = """
    from opentelemetry import trace

    with trace.get_tracer("image-app").start_as_current_span("no-gevent-app"):
        pass
    print("done")
"""


def _run(command: list[str], env: dict[str, str] | None = None, timeout: float = BUILD_TIMEOUT) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _uv() -> Path | None:
    """uv from this environment or PATH (fast, cached installs), if there is one."""
    found = BIN / "uv" if (BIN / "uv").is_file() else shutil.which("uv")
    return Path(found) if found else None


def _has_pip(python: Path) -> bool:
    return subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, check=False).returncode == 0


def _tool_env(python: Path, uv_cache: Path | None = None) -> dict[str, str]:
    """Environment for the build scripts: uv when there is one, pip otherwise."""
    env = clean_environment()
    env["PYTHON"] = str(python)
    uv = _uv()
    if uv is not None:
        env["PATH"] = os.pathsep.join([str(uv.parent), env["PATH"]])
        env["INSTALLER"] = "uv"
        if uv_cache is not None:
            env["UV_CACHE_DIR"] = str(uv_cache)
    elif _has_pip(python):
        env["INSTALLER"] = "pip"
    else:
        pytest.skip(f"neither uv nor pip is available to {python}; cannot build the image folders")
    return env


def _make_venv(folder: Path, packages: tuple[str, ...] = ()) -> Path:
    """A virtual environment with ``packages`` and nothing of this repository."""
    uv = _uv()
    python = folder / "bin" / "python"
    if uv is not None:
        _run([str(uv), "venv", "--quiet", "--python", sys.executable, str(folder)])
        if packages:
            _run([str(uv), "pip", "install", "--quiet", "--python", str(python), *packages])
    else:
        _run([sys.executable, "-m", "venv", str(folder)])
        if packages:
            _run([str(python), "-m", "pip", "install", "--quiet", *packages])
    return python


def _run_app(python: Path, app: Path, env: dict[str, str]) -> Result:
    done = subprocess.run(
        [str(python), str(app)], env=env, capture_output=True, text=True, timeout=120, check=False, cwd=app.parent
    )
    return Result(done.returncode, done.stdout, done.stderr)


#: What a victim environment's files were: content digest, inode and mode.
Snapshot = dict[str, tuple[str, int, int]]


def _snapshot(folder: Path) -> Snapshot:
    state: Snapshot = {}
    for path in _walk(folder):
        if path.is_file() and not path.is_symlink():
            info = path.stat()
            state[str(path.relative_to(folder))] = (
                hashlib.sha256(path.read_bytes()).hexdigest(),
                info.st_ino,
                stat.S_IMODE(info.st_mode),
            )
    return state


@dataclass(frozen=True)
class Victim:
    """An environment installed by uv from the builds' cache, and what it held before they ran."""

    root: Path
    before: Snapshot
    linked: Path


# --- session-wide builds ---------------------------------------------------------


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A uv cache of this session's own: the image builds never use the machine's."""
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture(scope="session")
def victim(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path) -> Victim:
    """A bystander environment with auto-instrumentation's sitecustomize, hard-linked from ``uv_cache``."""
    uv = _uv()
    assert uv is not None, "uv is a test dependency: the victim environment needs it"
    root = tmp_path_factory.mktemp("victim") / "venv"
    env = {**clean_environment(), "UV_CACHE_DIR": str(uv_cache), "UV_LINK_MODE": "hardlink"}
    _run([str(uv), "venv", "--quiet", "--python", sys.executable, str(root)], env=env)
    python = root / "bin" / "python"
    _run([str(uv), "pip", "install", "--quiet", "--python", str(python), "opentelemetry-instrumentation"], env=env)
    linked = next(root.glob("lib/python*/site-packages/opentelemetry/instrumentation/auto_instrumentation"))
    return Victim(root, _snapshot(root), linked / "sitecustomize.py")


def _build(target: Path, requirement: str, uv_cache: Path) -> None:
    """Run the image's build script as a careless builder would: ``umask 000``, a shared cache."""
    script = DOCKER / "build-autoinstrumentation.sh"
    _run(
        ["sh", "-c", 'umask 000 && exec sh "$0" "$@"', str(script), str(target), requirement],
        env=_tool_env(Path(sys.executable), uv_cache),
    )


@pytest.fixture(scope="session")
def autoinstrumentation(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path, victim: Victim) -> Path:
    """The Operator's folder, built by the image's script from this checkout, beside the victim."""
    target = tmp_path_factory.mktemp("images") / "autoinstrumentation"
    _build(target, f"{REPO}[otlp]", uv_cache)
    return target


@pytest.fixture(scope="session")
def autoinstrumentation_without_otlp(tmp_path_factory: pytest.TempPathFactory, uv_cache: Path) -> Path:
    """The same folder built without the ``[otlp]`` extra: no OTLP exporter in it."""
    target = tmp_path_factory.mktemp("images") / "autoinstrumentation-no-otlp"
    _build(target, str(REPO), uv_cache)
    return target


@pytest.fixture(scope="session")
def app_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An application's environment: gevent and python-magic, no OpenTelemetry."""
    return _make_venv(tmp_path_factory.mktemp("images") / "app-venv", APP_PACKAGES)


@pytest.fixture(scope="session")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An application's environment with nothing installed (no gevent)."""
    return _make_venv(tmp_path_factory.mktemp("images") / "bare-venv")


@dataclass(frozen=True)
class AppBase:
    python: Path
    sitecustomize_link: Path


@pytest.fixture(scope="session")
def app_base(tmp_path_factory: pytest.TempPathFactory) -> AppBase:
    """An environment set up by the base image's script (the application's pins included)."""
    root = tmp_path_factory.mktemp("images")
    python = _make_venv(root / "base-venv")
    link = root / "opt" / "otel-gevent-distro" / "sitecustomize"
    env = {**_tool_env(python), "SITECUSTOMIZE_LINK": str(link)}
    _run(["sh", str(DOCKER / "install-app-base.sh"), f"{REPO}[otlp]", *APP_PACKAGES], env=env)
    return AppBase(python, link)


def _operator_env(folder: Path, receiver: OtlpReceiver) -> dict[str, str]:
    """What the Operator puts in an instrumented container, plus this test's receiver."""
    env = clean_environment()
    env.update(receiver.env("http/protobuf"))
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(
                [str(folder / "opentelemetry/instrumentation/auto_instrumentation"), str(folder)]
            ),
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "otlp",
            "OTEL_PYTHON_DISTRO": "gevent",
        }
    )
    return env


# --- the Operator's folder -------------------------------------------------------------


def _walk(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            yield Path(root) / name


def test_autoinstrumentation_folder_holds_the_distro_but_not_gevent(autoinstrumentation: Path) -> None:
    top = {path.name.split("-")[0].lower() for path in autoinstrumentation.iterdir()}
    assert {"otel_gevent_distro", "opentelemetry", "grpc", "requests"} <= top, sorted(top)
    assert not top & set(NOT_IN_FOLDER), sorted(top & set(NOT_IN_FOLDER))
    startup = autoinstrumentation / "opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py"
    assert "otel_gevent_distro.startup.launch" in startup.read_text(), (
        "the distro's sitecustomize is not the one the Operator runs"
    )
    unreadable = [p for p in _walk(autoinstrumentation) if not p.is_symlink() and not p.stat().st_mode & stat.S_IROTH]
    assert not unreadable, f"not world-readable: {unreadable[:5]}"
    closed = [p for p in _walk(autoinstrumentation) if p.is_dir() and not p.stat().st_mode & stat.S_IXOTH]
    assert not closed, f"folders others cannot enter: {closed[:5]}"


def test_building_the_folder_changes_nothing_outside_it(autoinstrumentation: Path, victim: Victim) -> None:
    # The victim shares inodes with the builds' cache, so a write through a link would show here.
    assert victim.linked.stat().st_nlink > 1, "the victim is not hard-linked to the cache; the test proves nothing"
    after = _snapshot(victim.root)
    changed = sorted(name for name in victim.before.keys() | after.keys() if victim.before.get(name) != after.get(name))
    assert not changed, f"the build changed files of another environment: {changed[:10]}"
    assert "otel_gevent_distro" not in victim.linked.read_text()


def test_folder_modes_do_not_depend_on_the_umask(autoinstrumentation: Path) -> None:
    # Built under umask 000: only the script's own chmod can have made these modes.
    writable = [
        p for p in _walk(autoinstrumentation) if not p.is_symlink() and p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ]
    assert not writable, f"{len(writable)} group- or world-writable entries, e.g. {writable[:5]}"
    assert not (autoinstrumentation / ".lock").exists(), "the installer's lock file is in the folder"
    shared = [p for p in _walk(autoinstrumentation) if p.is_file() and not p.is_symlink() and p.stat().st_nlink > 1]
    assert not shared, f"files shared with other places: {shared[:5]}"


def test_operator_environment_exports_from_an_app_without_opentelemetry(
    autoinstrumentation: Path, app_python: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    plain = subprocess.run([str(app_python), "-c", "import opentelemetry"], capture_output=True, check=False)
    assert plain.returncode != 0, "the application environment must not have OpenTelemetry of its own"
    result = _run_app(app_python, write_app(tmp_path, REPORTED_CASE), _operator_env(autoinstrumentation, receiver))
    result.assert_clean()
    assert result.stdout.strip() == "done"
    assert result.warnings() == [], result.stderr
    spans = receiver.wait_for(lambda s: s.name == "image-app", timeout=30)
    assert spans[0].attributes["mime"] == "application/pdf"
    assert spans[0].resource["service.name"] == "test-app"


def test_operator_environment_without_gevent_runs_with_one_line(
    autoinstrumentation: Path, bare_python: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    result = _run_app(bare_python, write_app(tmp_path, NO_GEVENT_APP), _operator_env(autoinstrumentation, receiver))
    result.assert_clean()
    assert result.stdout.strip() == "done"
    lines = result.warnings()
    assert len(lines) == 1 and "gevent cannot be imported" in lines[0], result.stderr
    assert receiver.wait_for(lambda s: s.name == "no-gevent-app", timeout=30)


def test_missing_otlp_extra_is_one_line_for_metrics_and_spans_still_go_out(
    autoinstrumentation_without_otlp: Path, app_python: Path, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    # Spans and log records go through the distro's own OTLP/HTTP exporter, which needs only
    # the SDK; metrics are encoded by upstream's encoder, which comes with the [otlp] extra.
    folder = autoinstrumentation_without_otlp
    assert not list(folder.glob("opentelemetry_exporter_otlp*")), "the folder must not hold an OTLP exporter"
    result = _run_app(app_python, write_app(tmp_path, REPORTED_CASE), _operator_env(folder, receiver))
    result.assert_clean()
    assert result.stdout.strip() == "done"
    lines = result.warnings()
    assert [line.split("=", 1)[0] for line in lines] == ["otel-gevent-distro: OTEL_METRICS_EXPORTER"], result.stderr
    assert "pip install 'otel-gevent-distro[otlp]'" in lines[0], lines
    assert receiver.wait_for(lambda s: s.name == "image-app", timeout=30)


# --- the application base image ---------------------------------------------------------


def test_app_base_environment_exports(app_base: AppBase, receiver: OtlpReceiver, tmp_path: Path) -> None:
    assert (app_base.sitecustomize_link / "sitecustomize.py").is_file()
    env = clean_environment()
    env.update(receiver.env("http/protobuf"))
    env.update({"PYTHONPATH": str(app_base.sitecustomize_link), "OTEL_PYTHON_DISTRO": "gevent"})
    result = _run_app(app_base.python, write_app(tmp_path, REPORTED_CASE), env)
    result.assert_clean()
    assert result.stdout.strip() == "done"
    assert result.warnings() == [], result.stderr
    spans = receiver.wait_for(lambda s: s.name == "image-app", timeout=30)
    assert spans[0].attributes["mime"] == "application/pdf"


# --- one source of truth ----------------------------------------------------------------


def test_dockerfiles_run_the_tested_scripts() -> None:
    auto = (DOCKER / "autoinstrumentation/Dockerfile").read_text()
    base = (DOCKER / "app-base/Dockerfile").read_text()
    assert "docker/build-autoinstrumentation.sh /autoinstrumentation" in auto
    assert "FROM busybox" in auto
    assert "docker/install-app-base.sh" in base
    link = re.search(r"SITECUSTOMIZE_LINK=(\S+)", base)
    assert link, base
    assert f"PYTHONPATH={link.group(1)}" in base
    assert "OTEL_PYTHON_DISTRO=gevent" in base
    resource = (DOCKER / "autoinstrumentation/instrumentation.yaml").read_text()
    assert re.search(r"name: OTEL_PYTHON_DISTRO\s+value: gevent", resource), resource
    assert "kind: Instrumentation" in resource


def test_scripts_are_posix_shell() -> None:
    shell = shutil.which("dash") or shutil.which("sh")
    assert shell
    for script in ("build-autoinstrumentation.sh", "install-app-base.sh"):
        _run([shell, "-n", str(DOCKER / script)], timeout=30)
