"""A one-file Django site under ``gunicorn -k gevent``, through each launch path.

The site's settings module lives in the site's folder and gunicorn is started
from that folder, as users start it. The Django instrumentation reads the
settings while start-up runs, so the folder must already be on ``sys.path``
then (``opentelemetry-instrument`` puts it there; the sitecustomize folder
must too, and so must the Operator's folder, which holds the distro's
sitecustomize in place of upstream's): every request is answered and traced.
"""

from __future__ import annotations

import shutil
import signal
import urllib.request
from pathlib import Path

import pytest

from tests.launch import BIN, sitecustomize_folder
from tests.receiver import OtlpReceiver
from tests.servers import APPS, SERVER, ServerProcess, assert_no_noise, launch_command, report

pytest.importorskip("gunicorn", reason="gunicorn is not installed")
pytest.importorskip("django", reason="django is not installed")
pytest.importorskip(
    "opentelemetry.instrumentation.django", reason="opentelemetry-instrumentation-django is not installed"
)

REQUESTS = 20


def _no_control_socket() -> list[str]:
    """gunicorn >= 25 opens a control socket in a fixed place; parallel runs would share it."""
    from gunicorn.config import KNOWN_SETTINGS

    return ["--no-control-socket"] if any(s.name == "control_socket_disable" for s in KNOWN_SETTINGS) else []


def _statuses(base_url: str, count: int) -> list[int]:
    statuses = []
    for n in range(count):
        try:
            with urllib.request.urlopen(f"{base_url}/hello/{n}", timeout=15) as answer:
                statuses.append(answer.status)
        except urllib.error.HTTPError as error:
            statuses.append(error.code)
    return statuses


def _operator_folder(tmp_path: Path) -> str:
    """PYTHONPATH of the Operator's folder: the distro's sitecustomize where upstream's was."""
    root = tmp_path / "autoinstrumentation"
    auto = root / "opentelemetry" / "instrumentation" / "auto_instrumentation"
    auto.mkdir(parents=True)
    shutil.copy(Path(sitecustomize_folder()) / "sitecustomize.py", auto / "sitecustomize.py")
    return f"{auto}:{root}"


@pytest.mark.parametrize("via", ["instrument", "sitecustomize", "operator"])
def test_one_file_django_site_answers_and_traces_every_request(
    tmp_path: Path, receiver: OtlpReceiver, via: str
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(APPS / "django_site.py", site / "django_site.py")
    command = [str(BIN / "gunicorn"), "-k", "gevent", "-w", "1", "-b", "127.0.0.1:0"]
    command += [*_no_control_socket(), "django_site:application"]
    env = {
        **receiver.env("http/protobuf"),
        "DJANGO_SETTINGS_MODULE": "django_site",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    if via == "operator":
        full_command, full_env = launch_command(command, "sitecustomize", env)
        full_env["PYTHONPATH"] = _operator_folder(tmp_path)
    else:
        full_command, full_env = launch_command(command, via, env)
    with ServerProcess("gunicorn", full_command, full_env, site, tmp_path / "gunicorn.log") as server:
        address = server.wait_for_output(r"Listening at: (http://[\d.]+:\d+)", timeout=60).group(1)
        statuses = _statuses(address, REQUESTS)
        assert statuses == [200] * REQUESTS, server.output()
        assert server.stop(signal.SIGTERM) == 0, server.output()
        assert_no_noise("gunicorn", server.output())
    spans = receiver.wait_for(REQUESTS, timeout=30)
    served = [s for s in spans if s.kind == SERVER and s.attributes.get("http.route") == "hello/<int:n>"]
    assert len(served) == REQUESTS, [(s.name, s.kind, s.attributes) for s in spans]
    report("gunicorn django", via, answered=statuses.count(200), server_spans=len(served))
