"""Option parsing: every bad value is one warning naming the variable, then the default."""

from __future__ import annotations

import logging

import pytest

from otel_gevent_distro.settings import Settings, load_settings


def parse(caplog: pytest.LogCaptureFixture, **env: str) -> Settings:
    caplog.set_level(logging.WARNING, logger="otel_gevent_distro")
    return load_settings(env)


def test_defaults(caplog: pytest.LogCaptureFixture) -> None:
    settings = parse(caplog)
    assert settings == Settings()
    assert settings.patch == "all" and settings.preload_defaults is True
    assert set(settings.sources.values()) == {"default"}
    assert caplog.records == []


def test_valid_values_any_case_and_spacing(caplog: pytest.LogCaptureFixture) -> None:
    settings = parse(
        caplog,
        OTEL_PYTHON_GEVENT_PATCH=" NONE ",
        OTEL_PYTHON_GEVENT_PATCH_EXCLUDE="dns , Signal,,",
        OTEL_PYTHON_GEVENT_PRELOAD="json, xml.dom.minidom,json",
        OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS="False",
        OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS="GRPC",
    )
    assert settings.patch == "none"
    assert settings.patch_exclude == {"dns", "signal"}
    assert settings.preload == ("json", "xml.dom.minidom")
    assert settings.preload_defaults is False
    assert settings.disabled_integrations == {"grpc"}
    assert settings.sources["OTEL_PYTHON_GEVENT_PATCH"] == "environment"
    assert caplog.records == []


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected", "accepted"),
    [
        ("OTEL_PYTHON_GEVENT_PATCH", "sometimes", "patch", "all", "all, none"),
        ("OTEL_PYTHON_GEVENT_PATCH", "patch_all", "patch", "all", "all, none"),
        ("OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS", "yes", "preload_defaults", True, "true, false"),
        ("OTEL_PYTHON_GEVENT_PRELOAD_DEFAULTS", "0", "preload_defaults", True, "true, false"),
        ("OTEL_PYTHON_GEVENT_PATCH_EXCLUDE", "dns,fork", "patch_exclude", frozenset({"dns"}), "socket"),
        ("OTEL_PYTHON_GEVENT_PRELOAD", "json,not a module,9lives,a..b", "preload", ("json",), "dotted"),
        ("OTEL_PYTHON_GEVENT_DISABLED_INTEGRATIONS", "grpc,redis", "disabled_integrations", {"grpc"}, "psycogreen"),
    ],
)
def test_bad_values_warn_and_fall_back(
    caplog: pytest.LogCaptureFixture, variable: str, value: str, field: str, expected: object, accepted: str
) -> None:
    settings = parse(caplog, **{variable: value})
    assert getattr(settings, field) == expected
    messages = [r.getMessage() for r in caplog.records]
    assert messages, "a bad value must be reported"
    assert all(variable in m and accepted in m for m in messages), messages
    assert all(m.startswith("otel-gevent-distro: ") for m in messages)


def test_one_warning_per_bad_entry(caplog: pytest.LogCaptureFixture) -> None:
    parse(caplog, OTEL_PYTHON_GEVENT_PRELOAD="ok_module,bad-name,also bad")
    assert len(caplog.records) == 2


def test_empty_values_are_defaults(caplog: pytest.LogCaptureFixture) -> None:
    settings = parse(caplog, OTEL_PYTHON_GEVENT_PATCH="", OTEL_PYTHON_GEVENT_PRELOAD=" , ")
    assert settings.patch == "all" and settings.preload == ()
    assert caplog.records == []


def test_excluding_subprocess_alone_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    settings = parse(caplog, OTEL_PYTHON_GEVENT_PATCH_EXCLUDE="subprocess,dns")
    assert settings.patch_exclude == {"dns"}
    [record] = caplog.records
    assert "hang" in record.getMessage() and "os,signal,subprocess" in record.getMessage()
    assert parse(caplog, OTEL_PYTHON_GEVENT_PATCH_EXCLUDE="os,signal,subprocess").patch_exclude == {
        "os",
        "signal",
        "subprocess",
    }


def test_excluding_thread_takes_queue_along(caplog: pytest.LogCaptureFixture) -> None:
    assert parse(caplog, OTEL_PYTHON_GEVENT_PATCH_EXCLUDE="thread").patch_exclude == {"thread", "queue"}
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_every_integration_the_option_names_can_be_turned_on() -> None:
    from otel_gevent_distro.settings import INTEGRATIONS
    from otel_gevent_distro.startup.integrations import DEFINITIONS

    assert set(DEFINITIONS) == set(INTEGRATIONS)
