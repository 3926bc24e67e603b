"""The distro's defaults: applied where the user set nothing, whoever else set something."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from otel_gevent_distro.startup import defaults

PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in defaults.DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(defaults, "_user_environment", None)
    return os.environ  # type: ignore[return-value]


def test_defaults_fill_what_nobody_set(environ: dict[str, str]) -> None:
    defaults.remember_user_environment()
    defaults.apply_defaults()
    assert {name: environ[name] for name in defaults.DEFAULTS} == defaults.DEFAULTS


def test_another_distros_choice_gives_way_the_users_does_not(environ: dict[str, str]) -> None:
    environ["OTEL_TRACES_EXPORTER"] = "console"
    defaults.remember_user_environment()
    environ[PROTOCOL] = "grpc"  # set during start-up, as opentelemetry-distro's distro does
    defaults.apply_defaults()
    assert environ[PROTOCOL] == "http/protobuf"
    assert environ["OTEL_TRACES_EXPORTER"] == "console"


def test_the_users_environment_is_the_first_one_recorded(environ: dict[str, str]) -> None:
    environ[PROTOCOL] = "grpc"
    defaults.remember_user_environment()
    environ[PROTOCOL] = "http/protobuf"
    defaults.remember_user_environment()
    assert defaults.user_environment()[PROTOCOL] == "grpc"


def test_unrecorded_the_users_environment_is_the_one_the_process_started_with() -> None:
    program = (
        "import os\n"
        "os.environ['OTEL_EXPORTER_OTLP_PROTOCOL'] = 'grpc'\n"
        "from otel_gevent_distro.startup import defaults\n"
        "if defaults._environment_at_start() is None:\n"
        "    print('no start-up environment here')\n"
        "else:\n"
        "    defaults.apply_defaults()\n"
        "    print(os.environ['OTEL_EXPORTER_OTLP_PROTOCOL'], os.environ['OTEL_LOGS_EXPORTER'])\n"
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env["OTEL_LOGS_EXPORTER"] = "none"
    done = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True)
    if done.stdout.strip() == "no start-up environment here":
        pytest.skip("this system keeps no start-up environment of a process")
    assert done.stdout.split() == ["http/protobuf", "none"]
