"""Launch a program the way a user does, and read what it left behind.

``run_app`` starts a Python script through one of the distro's launch paths:

* ``"instrument"``: ``opentelemetry-instrument python app.py`` with
  ``OTEL_PYTHON_DISTRO=gevent``;
* ``"sitecustomize"``: ``python app.py`` with the installed distro's
  sitecustomize folder first on ``PYTHONPATH``;
* ``"plain"``: ``python app.py`` with no telemetry start-up at all.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
#: Errors that must never appear in a telemetry-enabled program's stderr: the
#: fork ``AssertionError``, any traceback, ``KeyError`` (``threading._delete``),
#: a ``RuntimeError`` printed on a line of its own (without a traceback, as
#: greenlet and gevent print them at exit) and what the interpreter prints for
#: an exception it cannot raise (``Exception ignored in: ...``, from ``__del__``,
#: callbacks and finalizers). A ``RuntimeError`` named inside another line (a
#: distro warning quoting a preload's exception) is that line's business.
ERRORS = re.compile(
    r"AssertionError|Traceback|KeyError|^[ \t]*RuntimeError\b|Exception ignored in",
    re.MULTILINE,
)
#: The distro's own lines saying telemetry was lost: a full queue's drops, items
#: left unexported at shutdown, a skipped metric export, anything "lost". The
#: start-up line naming an exporter that is not installed ("... are not exported
#: by it") is a configuration notice, not a loss, and its tests check it by name.
LOSS = re.compile(
    r"^otel-gevent-distro: .*(?:\bdropped\b|\b(?:was|were) not exported\b|\bexport was skipped\b|\blost\b)",
    re.MULTILINE,
)
#: What must never appear in a telemetry-enabled program's stderr: :data:`ERRORS` and :data:`LOSS`.
NOISE = re.compile(f"{ERRORS.pattern}|{LOSS.pattern}", re.MULTILINE)
#: Instrumentations of the server tests' libraries: importing them costs about
#: two seconds per launch, so programs that do not use those libraries run
#: without them. Server tests turn them back on with :data:`ALL_INSTRUMENTATIONS`.
SERVER_INSTRUMENTATIONS = "flask,django,celery,requests,threading"
ALL_INSTRUMENTATIONS = {"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": ""}


def sitecustomize_folder() -> str:
    out = subprocess.run(
        [str(BIN / "otel-gevent-distro"), "sitecustomize-path"], check=True, capture_output=True, text=True
    )
    return out.stdout.strip()


def clean_environment() -> dict[str, str]:
    """The test runner's environment without any OpenTelemetry or start-up settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "_OTEL_")) and k not in ("PYTHONPATH", "PYTHONSTARTUP")
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    env["OTEL_SERVICE_NAME"] = "test-app"
    env["OTEL_BSP_SCHEDULE_DELAY"] = "200"
    env["OTEL_BLRP_SCHEDULE_DELAY"] = "200"
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "500"
    env["OTEL_PYTHON_DISABLED_INSTRUMENTATIONS"] = SERVER_INSTRUMENTATIONS
    return env


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    def assert_clean(self, expected_returncode: int = 0, loss_expected: bool = False) -> None:
        """Exit code as expected and nothing of :data:`NOISE` in stderr.

        ``loss_expected``: the test provokes a loss on purpose (a dead collector)
        and checks the distro's loss line itself; the errors are still checked.
        """
        detail = f"\n--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        assert self.returncode == expected_returncode, f"exit code {self.returncode}{detail}"
        found = (ERRORS if loss_expected else NOISE).search(self.stderr)
        assert not found, f"noise in stderr: {found.group(0) if found else ''!r}{detail}"

    def warnings(self) -> list[str]:
        """The distro's own log lines in stderr.

        A line may begin after text another thread wrote without a line end
        (gevent's monitor prints reports line by line): it is taken from its prefix on.
        """
        prefix = "otel-gevent-distro:"
        return [line[line.index(prefix) :] for line in self.stderr.splitlines() if prefix in line]


def write_app(folder: Path, source: str, name: str = "app.py") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def run_app(
    app: Path,
    via: str,
    env: dict[str, str] | None = None,
    args: list[str] | None = None,
    python_args: list[str] | None = None,
    timeout: float = 120,
) -> Result:
    """Run ``app`` through the launch path ``via`` and wait for it."""
    full_env = clean_environment()
    full_env.update(env or {})
    command = [str(BIN / "python"), *(python_args or []), str(app), *(args or [])]
    if via == "instrument":
        full_env.setdefault("OTEL_PYTHON_DISTRO", "gevent")
        command = [str(BIN / "opentelemetry-instrument"), *command]
    elif via == "sitecustomize":
        extra = full_env.get("PYTHONPATH")
        full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [sitecustomize_folder(), extra]))
    elif via != "plain":
        raise ValueError(f"unknown launch path {via!r}")
    done = subprocess.run(
        command, check=False, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=app.parent
    )
    return Result(done.returncode, done.stdout, done.stderr)
