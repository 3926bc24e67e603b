"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.receiver import BlackHole, OtlpReceiver

# --- OTLP receivers (tests/receiver.py) --------------------------------------
# ``otlp_receiver`` is one real OTLP/HTTP + OTLP/gRPC server for the session;
# ``receiver`` hands it to a test cleared and with its default behaviour.
# ``blackhole`` is a per-test TCP endpoint that accepts and never answers.


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as server:
        yield server


@pytest.fixture
def receiver(otlp_receiver: OtlpReceiver) -> OtlpReceiver:
    otlp_receiver.reset()
    return otlp_receiver


@pytest.fixture
def blackhole() -> Iterator[BlackHole]:
    with BlackHole() as hole:
        yield hole
