"""gevent integrations: gRPC's gevent mode and psycogreen, each on by default and opt-out-able.

They turn on through gevent's ``gevent.plugins.monkey.did_patch_all`` entry
point, so also when the application (not the distro) calls ``patch_all()``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.launch import run_app, write_app

PROBE = """
    import json
    from grpc._cython import cygrpc
    import psycopg2.extensions
    from otel_gevent_distro.startup.integrations import enabled_integrations
    print(json.dumps({
        "enabled": enabled_integrations(),
        "grpc_gevent": bool(cygrpc.g_gevent_activated),
        "psycopg_wait_callback": psycopg2.extensions.get_wait_callback() is not None,
    }))
"""

pytest.importorskip("psycogreen")
pytest.importorskip("psycopg2")


def probe(tmp_path: Path, via: str, env: dict[str, str], source: str = PROBE) -> dict:
    import json

    result = run_app(write_app(tmp_path, source), via, env=env)
    result.assert_clean()
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("via", ["instrument", "sitecustomize"])
def test_integrations_are_on_by_default(tmp_path: Path, receiver, via: str) -> None:
    seen = probe(tmp_path, via, receiver.env("grpc"))
    assert seen == {
        "enabled": {"grpc": True, "psycogreen": True},
        "grpc_gevent": True,
        "psycopg_wait_callback": True,
    }


@pytest.mark.parametrize(
    ("disabled", "expected"),
    [
        ("grpc", {"grpc": False, "psycogreen": True}),
        ("psycogreen", {"grpc": True, "psycogreen": False}),
        ("grpc,psycogreen", {"grpc": False, "psycogreen": False}),
    ],
)
def test_each_integration_can_be_turned_off(tmp_path: Path, receiver, disabled: str, expected: dict) -> None:
    env = {**receiver.env("http/protobuf"), "OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS": disabled}
    seen = probe(tmp_path, "instrument", env)
    assert seen["enabled"] == expected
    assert seen["grpc_gevent"] is expected["grpc"]
    assert seen["psycopg_wait_callback"] is expected["psycogreen"]


def test_application_patching_turns_them_on_through_the_gevent_plugin(tmp_path: Path) -> None:
    """No distro at start-up: the application patches, gevent calls the plugin."""
    source = "import gevent.monkey\ngevent.monkey.patch_all()\n" + PROBE.replace("\n    ", "\n")
    seen = probe(tmp_path, "plain", {}, source)
    assert seen["enabled"] == {"grpc": True, "psycogreen": True}
    assert seen["grpc_gevent"] is True


def test_patching_after_the_sdk_exists_refuses_grpc_mode(tmp_path: Path, receiver) -> None:
    """OTEL_PYTHON_GEVENT_PATCH=none and the app patches late: gRPC objects may exist, so no gevent mode.

    Patching after the SDK's workers started is unsafe in itself (gevent's own
    threading bookkeeping complains at exit), so only the distro's part is checked.
    """
    source = """
        import gevent.monkey
        gevent.monkey.patch_all()
        from otel_gevent_distro.startup.integrations import enabled_integrations
        print(enabled_integrations()["grpc"])
    """
    env = {**receiver.env("grpc"), "OTEL_PYTHON_GEVENT_PATCH": "none"}
    result = run_app(write_app(tmp_path, source), "instrument", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False"]
    [line] = result.warnings()
    assert "gevent was patched after the OpenTelemetry SDK was built" in line


@pytest.mark.parametrize(
    ("chosen", "grpc_loaded", "expected"),
    [
        (None, False, "poll"),  # children of gevent's subprocess abort in epoll1
        ("epoll1", False, "epoll1"),  # the user's choice stays
        (None, True, None),  # too late: gRPC read it already
    ],
)
def test_grpc_poll_strategy_is_chosen_before_grpc_loads(
    monkeypatch: pytest.MonkeyPatch, chosen: str | None, grpc_loaded: bool, expected: str | None
) -> None:
    import os
    import sys

    from otel_gevent_distro.startup import integrations

    if chosen is None:
        monkeypatch.delenv("GRPC_POLL_STRATEGY", raising=False)
    else:
        monkeypatch.setenv("GRPC_POLL_STRATEGY", chosen)
    if grpc_loaded:
        monkeypatch.setitem(sys.modules, "grpc", sys.modules.get("grpc") or object())
    else:
        monkeypatch.delitem(sys.modules, "grpc", raising=False)
    integrations._choose_grpc_poller()
    assert os.environ.get("GRPC_POLL_STRATEGY") == expected


NOTHING_IMPORTED = """
    import json, sys
    from otel_gevent_distro.startup.integrations import integration_states
    print(json.dumps({
        "loaded": sorted(m for m in ("grpc", "psycopg2", "psycogreen") if m in sys.modules),
        "states": integration_states(),
    }))
"""


@pytest.mark.parametrize("via", ["instrument", "sitecustomize"])
def test_a_program_that_uses_neither_library_loads_neither(tmp_path: Path, receiver, via: str) -> None:
    """Installed is not imported: start-up leaves gRPC and psycopg2 unloaded until the program imports them."""
    seen = probe(tmp_path, via, receiver.env("http/protobuf"), NOTHING_IMPORTED)
    assert seen == {"loaded": [], "states": {"grpc": "on first import", "psycogreen": "on first import"}}


def test_the_otlp_grpc_exporter_turns_grpc_mode_on_before_its_channel(tmp_path: Path, receiver) -> None:
    # The SDK's build imports grpc for the exporter, then makes its channel:
    # the import turned gevent mode on in between (a channel made before it
    # would make init_gevent refuse or hang exports).
    seen = probe(tmp_path, "instrument", receiver.env("grpc"), NOTHING_IMPORTED)
    assert seen["loaded"] == ["grpc"]
    assert seen["states"]["grpc"] == "on"
