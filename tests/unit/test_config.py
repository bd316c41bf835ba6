"""Settings: defaults that run, and a bad value named before anything starts."""

from __future__ import annotations

from typing import Any

import pytest

from daxproxy.core.config import Endpoints, SettingError, Settings, resolve_endpoints
from daxproxy.edge.cli import build_parser, main, settings_from_args


def test_defaults() -> None:
    settings = Settings()
    assert (settings.host, settings.port, settings.upstream) == ("127.0.0.1", 8111, None)
    assert settings.max_body_bytes == 16 * 1024 * 1024


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("port", -1),
        ("port", 70000),
        ("port", True),
        ("port", "8111"),
        ("connect_timeout_millis", 0),
        ("request_timeout_millis", -5),
        ("max_body_bytes", 10),
        ("upstream_max_connections", 0),
        ("upstream", "localhost:8000"),
        ("upstream", "ftp://localhost:8000"),
        ("upstream", "http://"),
        ("upstream", "http://localhost:99999"),
        ("upstream", "http://localhost:8000/some/path"),
        ("upstream", "http://localhost:8000/?x=1"),
        ("region", "us_east_1"),
        ("region", "mars"),
        ("log_level", "loud"),
        ("host", ""),
    ],
)
def test_a_bad_value_names_its_setting(setting: str, value: Any) -> None:
    with pytest.raises(SettingError) as caught:
        Settings(**{setting: value})
    assert caught.value.setting == setting
    assert repr(setting) in str(caught.value)


@pytest.mark.parametrize(
    "upstream",
    ["aws", "http://localhost:8000", "https://dynamodb.example:443/", "http://[::1]:8000"],
)
def test_good_upstreams(upstream: str) -> None:
    assert Settings(upstream=upstream).upstream == upstream


@pytest.mark.parametrize(
    ("upstream", "region", "expected"),
    [
        (
            "aws",
            "eu-west-1",
            Endpoints(
                "https://dynamodb.eu-west-1.amazonaws.com/",
                "https://streams.dynamodb.eu-west-1.amazonaws.com/",
            ),
        ),
        (
            "aws",
            "cn-north-1",
            Endpoints(
                "https://dynamodb.cn-north-1.amazonaws.com.cn/",
                "https://streams.dynamodb.cn-north-1.amazonaws.com.cn/",
            ),
        ),
        (
            "http://localhost:8000",
            "us-east-1",
            Endpoints("http://localhost:8000/", "http://localhost:8000/"),
        ),
        (
            "http://localhost:8000/",
            "us-east-1",
            Endpoints("http://localhost:8000/", "http://localhost:8000/"),
        ),
    ],
)
def test_endpoints(upstream: str, region: str, expected: Endpoints) -> None:
    assert resolve_endpoints(upstream, region) == expected


def test_flags_become_settings() -> None:
    args = build_parser().parse_args(
        ["--port", "9000", "--upstream", "aws", "--region", "eu-west-1", "--max-body-bytes", "2048"]
    )
    settings = settings_from_args(args)
    assert (settings.port, settings.upstream, settings.region, settings.max_body_bytes) == (
        9000,
        "aws",
        "eu-west-1",
        2048,
    )
    assert settings.request_timeout_millis == Settings().request_timeout_millis


def test_every_setting_has_a_flag() -> None:
    help_text = build_parser().format_help()
    for name in Settings.names():
        assert "--" + name.replace("_", "-") in help_text


def test_a_bad_flag_exits_2_naming_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--upstream", "localhost:8000"]) == 2
    assert "'upstream'" in capsys.readouterr().err
