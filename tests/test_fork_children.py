"""A child forked to run a program must never run the parent's greenlets.

The SDK's providers refresh their resource after fork through a thread pool;
under gevent that switched the child into the parent's (not yet
reinitialised) hub, and greenlets of the parent ran again in every
``subprocess`` child before it exec'd.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from tests.launch import run_app, write_app

APP = """
    import os, subprocess, sys
    import gevent
    from opentelemetry import trace

    log = open(sys.argv[1], "a", buffering=1)
    parent = os.getpid()

    def ticker():
        while True:
            log.write(f"{os.getpid()}\\n")
            gevent.sleep(0.001)

    gevent.spawn(ticker)
    tracer = trace.get_tracer("fork-children")
    for i in range(20):
        with tracer.start_as_current_span(f"run-{i}"):
            subprocess.run(["true"], check=True)
    print(parent)
"""


@pytest.mark.parametrize("via", ["instrument", "sitecustomize"])
def test_subprocess_children_never_run_parent_greenlets(tmp_path: Path, receiver, via: str) -> None:
    ticks = tmp_path / "ticks.txt"
    result = run_app(write_app(tmp_path, APP), via, env=receiver.env("http/protobuf"), args=[str(ticks)])
    result.assert_clean()
    parent = result.stdout.strip()
    pids = set(ticks.read_text().split())
    assert pids == {parent}, f"greenlets of {parent} ran in children {pids - {parent}}"
    assert len(receiver.wait_for(20, signal="spans", timeout=30)) == 20


#: SDK releases that refresh a provider's resource after fork (older ones keep the parent's).
SDK_REFRESHES_RESOURCES = pytest.mark.applies_when(
    hasattr(importlib.import_module("opentelemetry.sdk.trace"), "_get_process_dependent_resource"),
    reason="this SDK release does not refresh its resource after fork",
)


@SDK_REFRESHES_RESOURCES
def test_refresh_is_left_alone_without_gevent_threads() -> None:
    """In a process where gevent did not patch threading, the SDK keeps its own refresh."""
    import opentelemetry.sdk.trace as sdk_trace

    from otel_gevent_distro.startup import resource_refresh

    before = sdk_trace._get_process_dependent_resource
    assert resource_refresh.install() == []
    assert sdk_trace._get_process_dependent_resource is before


@SDK_REFRESHES_RESOURCES
def test_inline_detection_keeps_the_instance_id_within_a_process() -> None:
    from otel_gevent_distro.startup.resource_refresh import detect_inline

    first = detect_inline().attributes["service.instance.id"]
    assert first == detect_inline().attributes["service.instance.id"]
