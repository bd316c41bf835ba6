"""Settings: defaults that run, and a bad value named before anything starts."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from daxproxy.core import settings_sources as sources
from daxproxy.core.config import (
    Endpoints,
    SettingError,
    Settings,
    dax_endpoint,
    resolve_endpoints,
)
from daxproxy.edge.cli import build_parser, main, parse_flags, settings_from_args
from daxproxy.edge.server import mode_note
from tests.unit.test_settings_sources import BAD_ENV_VALUES, BAD_FILE_VALUES


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
        ("coherence", "stream"),
        ("coherence", None),
    ],
)
def test_a_bad_value_names_its_setting(setting: str, value: Any) -> None:
    with pytest.raises(SettingError) as caught:
        Settings(**{setting: value})
    assert caught.value.setting == setting
    assert repr(setting) in str(caught.value)


@pytest.mark.parametrize(
    "value",
    [
        "dax.example:9000",  # a host name: clients, not the proxy, must resolve it
        "10.0.0.1",
        "10.0.0.1:",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "10.0.0.1:+9",
        "10.0.0.1:\u0663",  # a digit, but not 0 to 9
        "2001:db8::1:9000",
        "[10.0.0.1]:9000",
        "0.0.0.0:9000",
        "[::]:9000",
        "[fe80::1%eth0]:9000",
        "",
    ],
)
def test_a_bad_dax_endpoint_names_the_setting(value: str) -> None:
    with pytest.raises(SettingError) as caught:
        Settings(dax_endpoint=value)
    assert caught.value.setting == "dax_endpoint"


@pytest.mark.parametrize(
    ("value", "address", "port"),
    [
        ("203.0.113.7:9000", "203.0.113.7", 9000),
        ("[2001:db8::7]:1", "2001:db8::7", 1),
        ("127.0.0.1:65535", "127.0.0.1", 65535),
    ],
)
def test_a_dax_endpoint_is_an_ip_address_and_a_port(value: str, address: str, port: int) -> None:
    assert Settings(dax_endpoint=value).dax_endpoint == value
    found, found_port = dax_endpoint(value)
    assert (str(found), found_port) == (address, port)


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


def test_coherence_from_each_source() -> None:
    assert Settings().coherence == "none"
    args = build_parser().parse_args(["--coherence", "streams"])
    assert settings_from_args(args).coherence == "streams"
    environ = sources.from_environ({"DAXPROXY_COHERENCE": "streams"})
    assert sources.resolve(environ).coherence == "streams"
    with pytest.raises(SettingError, match="'coherence': must be one of none, streams"):
        sources.resolve(sources.from_toml('coherence = "all"', "f.toml"))


def test_every_setting_has_a_flag() -> None:
    help_text = build_parser().format_help()
    for name in Settings.names():
        assert "--" + name.replace("_", "-") in help_text


def test_a_bad_flag_exits_2_naming_the_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--upstream", "localhost:8000"]) == 2
    assert "'upstream'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "flag", "suggestion"),
    [
        # An abbreviation is not a flag: "--record-ttl 5" once meant a 5 ms cache.
        (["--record-ttl", "5"], "--record-ttl", "--record-ttl-millis"),
        (["--record-ttl=5"], "--record-ttl", "--record-ttl-millis"),
        (["--port", "0", "--query-ttl", "60000"], "--query-ttl", "--query-ttl-millis"),
        (["--prot", "8111"], "--prot", "--port"),
        (["--upstrem", "aws"], "--upstrem", "--upstream"),
        (["--admn"], "--admn", "--admin"),
        (["--no-admn"], "--no-admn", "--no-admin"),
        (["--confg", "x.toml"], "--confg", "--config"),
    ],
)
def test_a_flag_not_spelled_out_exits_2_with_a_suggestion(
    argv: list[str], flag: str, suggestion: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, {}) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"daxproxy: setting {flag!r}: is not a setting; did you mean {suggestion!r}?\n"
    )
    assert captured.out == ""


def test_an_unknown_flag_with_nothing_close_points_to_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--zzzzzz"], {}) == 2
    assert capsys.readouterr().err == (
        "daxproxy: setting '--zzzzzz': is not a setting; daxproxy --help lists every setting\n"
    )
    assert main(["stray"], {}) == 2
    assert "'stray': is not a setting" in capsys.readouterr().err


def test_the_parser_takes_no_abbreviation() -> None:
    parser = build_parser()
    assert parser.allow_abbrev is False
    with pytest.raises(SettingError, match="did you mean '--record-ttl-millis'"):
        parse_flags(parser, ["--record-ttl-m", "5"])
    exact = parse_flags(parser, ["--record-ttl-millis", "5", "--no-admin"])
    assert (exact.record_ttl_millis, exact.admin) == (5, False)


def test_the_same_mistake_gets_the_same_line_from_every_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "daxproxy.toml"
    path.write_text("record-ttl = 5\n")
    assert main(["--config", str(path)], {}) == 2
    assert main([], {"DAXPROXY_RECORD_TTL": "5"}) == 2
    assert main(["--record-ttl", "5"], {}) == 2
    from_file, from_environ, from_flag = capsys.readouterr().err.splitlines()
    assert from_file.endswith("did you mean 'record-ttl-millis'?")
    assert from_environ.endswith("did you mean 'DAXPROXY_RECORD_TTL_MILLIS'?")
    assert from_flag.endswith("did you mean '--record-ttl-millis'?")
    for line in (from_file, from_environ, from_flag):
        assert line.startswith("daxproxy: setting ") and ": is not a setting" in line


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (Settings(), "for up to 300 s"),
        (Settings(query_ttl_millis=60_000), "for up to 60 s"),
        (Settings(mode="strict"), None),
        (Settings(query_ttl_millis=0), None),
        (Settings(query_cache_max_bytes=0), None),
    ],
)
def test_dax_mode_with_the_query_cache_on_says_what_it_means(
    settings: Settings, expected: str | None
) -> None:
    note = mode_note(settings)
    if expected is None:
        assert note is None
    else:
        assert note is not None and expected in note
        assert note.startswith("--mode dax: ") and "--mode strict" in note


# --- Settings from a file, the environment and flags, as the command line stacks them ----

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config" / "daxproxy.toml"


def settings_of(argv: list[str], environ: dict[str, str] | None = None) -> Settings:
    return settings_from_args(build_parser().parse_args(argv), environ or {})


def test_the_file_then_the_environment_then_the_flags(tmp_path: Path) -> None:
    path = tmp_path / "daxproxy.toml"
    path.write_text("port = 9001\nrecord-ttl-millis = 1\nadmin = true\nmode = 'strict'\n")
    environ = {"DAXPROXY_PORT": "9002", "DAXPROXY_RECORD_TTL_MILLIS": "2", "DAXPROXY_ADMIN": "no"}
    settings = settings_of(["--config", str(path), "--port", "9003"], environ)
    assert (settings.port, settings.record_ttl_millis) == (9003, 2)
    assert (settings.admin, settings.mode) == (False, "strict")
    # A switch turns off what a variable or the file turned on.
    assert settings_of(["--config", str(path), "--no-admin"]).admin is False
    assert settings_of(["--admin"], {"DAXPROXY_ADMIN": "false"}).admin is True


def test_the_file_may_come_from_daxproxy_config(tmp_path: Path) -> None:
    first, second = tmp_path / "first.toml", tmp_path / "second.toml"
    first.write_text("port = 9001\n")
    second.write_text("port = 9002\n")
    assert settings_of([], {"DAXPROXY_CONFIG": str(first)}).port == 9001
    assert settings_of(["--config", str(second)], {"DAXPROXY_CONFIG": str(first)}).port == 9002
    assert settings_of([], {"DAXPROXY_CONFIG": ""}) == Settings()


@pytest.mark.parametrize("setting", sorted(BAD_ENV_VALUES))
def test_a_bad_variable_exits_2_naming_the_setting(
    setting: str, capsys: pytest.CaptureFixture[str]
) -> None:
    value = BAD_ENV_VALUES[setting][0]
    assert main([], {sources.env_name(setting): value}) == 2
    err = capsys.readouterr().err
    assert err.startswith("daxproxy: ") and err.count("\n") == 1
    assert repr(setting) in err and sources.env_name(setting) in err


@pytest.mark.parametrize("setting", Settings.names())
def test_a_bad_file_value_exits_2_naming_the_setting(
    setting: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "daxproxy.toml"
    path.write_text(f"{setting} = {BAD_FILE_VALUES[setting][0]}\n")
    assert main(["--config", str(path)], {}) == 2
    err = capsys.readouterr().err
    assert repr(setting) in err and str(path) in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "No such file or directory"),
        (b"port = \n", "line 1, column 8"),
        (b"port = 1\x00\n", "not valid TOML"),
        (b"host = '\xff'\n", "not UTF-8"),
        (b"prot = 1\n", "'prot': is not a setting"),
    ],
)
def test_a_bad_file_exits_2_naming_it(
    content: bytes | None, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "daxproxy.toml"
    if content is not None:
        path.write_bytes(content)
    assert main([], {"DAXPROXY_CONFIG": str(path)}) == 2
    err = capsys.readouterr().err
    assert str(path) in err and problem in err


def test_a_directory_is_not_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path)], {}) == 2
    assert "Is a directory" in capsys.readouterr().err


def test_an_unknown_variable_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([], {"DAXPROXY_RECORD_TTL": "1000"}) == 2
    assert "'DAXPROXY_RECORD_TTL': is not a setting" in capsys.readouterr().err


# --- config/daxproxy.toml: the commented file users copy ---------------------------------

_DOCUMENTED = re.compile(r"^# ([a-z_]+) = (.+)$", re.MULTILINE)


def test_the_sample_file_unchanged_gives_exactly_the_defaults() -> None:
    text = SAMPLE.read_text()
    assert tomllib.loads(text) == {}
    assert sources.resolve(sources.from_toml(text, str(SAMPLE))) == Settings()
    assert settings_of(["--config", str(SAMPLE)]) == Settings()


def test_the_sample_file_documents_every_setting_with_its_default() -> None:
    """Fails when a setting is added without documenting it, or its default changes."""
    text = SAMPLE.read_text()
    documented = dict(_DOCUMENTED.findall(text))
    assert sorted(documented) == sorted(Settings.names())
    defaults = Settings()
    for name, value in documented.items():
        (shown,) = tomllib.loads(f"{name} = {value}").values()
        default = getattr(defaults, name)
        if default is None:  # not set by default: an example, which must be valid
            Settings(**{name: shown})
        else:
            assert shown == default, name
        # ...and its meaning: a comment right above it that is more than the key.
        above = text[: text.index(f"# {name} = ")].rstrip("\n").rsplit("\n", 1)[-1]
        assert above.startswith("# ") and " = " not in above, name


def test_the_sample_file_with_its_defaults_uncommented_gives_the_defaults() -> None:
    defaults = Settings()
    lines = [
        f"{name} = {value}"
        for name, value in _DOCUMENTED.findall(SAMPLE.read_text())
        if getattr(defaults, name) is not None
    ]
    not_set = [name for name in Settings.names() if getattr(defaults, name) is None]
    assert len(lines) == len(Settings.names()) - len(not_set)
    assert sources.resolve(sources.from_toml("\n".join(lines), str(SAMPLE))) == defaults


def test_the_reference_lists_every_setting() -> None:
    reference = (REPO / "config" / "README.md").read_text()
    for name in Settings.names():
        assert f"| `{name}` |" in reference, name
        assert f"`{sources.env_name(name)}`" in reference, name
