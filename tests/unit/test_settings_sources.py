"""Settings sources: the TOML file, DAXPROXY_* variables and flags, stacked in that order.

Every setting's bad value is tried through the file and through the environment, and each
must stop start-up naming the setting and the source; the environment is always a plain
mapping passed in, never the process's.
"""

from __future__ import annotations

from typing import Any

import pytest

from daxproxy.core import settings_sources as sources
from daxproxy.core.config import SettingError, Settings
from daxproxy.core.settings_sources import ConfigFileError, Layer

PATH = "/etc/daxproxy.toml"


def resolve(text: str = "", environ: dict[str, str] | None = None, **flags: Any) -> Settings:
    return sources.resolve(
        sources.from_toml(text, PATH),
        sources.from_environ(environ or {}),
        sources.from_flags(flags),
    )


def test_nothing_given_is_the_defaults() -> None:
    assert resolve() == Settings()


def test_each_source_sets_each_kind_of_setting() -> None:
    text = 'port = 9000\nadmin = true\nregion = "eu-west-1"\n'
    assert resolve(text) == Settings(port=9000, admin=True, region="eu-west-1")
    environ = {"DAXPROXY_PORT": "9000", "DAXPROXY_ADMIN": "true", "DAXPROXY_REGION": "eu-west-1"}
    assert resolve(environ=environ) == Settings(port=9000, admin=True, region="eu-west-1")


@pytest.mark.parametrize(
    ("setting", "in_file", "in_env", "flag", "env_value"),
    [
        ("port", "port = 9001", "9002", 9003, 9002),
        ("record_ttl_millis", "record-ttl-millis = 1", "2", 3, 2),
        ("query_ttl_millis", "query_ttl_millis = 1", "2", 3, 2),
        ("upstream", 'upstream = "aws"', "http://localhost:8000", "http://localhost:9000", None),
        ("log_format", 'log_format = "json"', "text", "json", "text"),
        ("admin", "admin = true", "no", True, False),
        ("mode", 'mode = "strict"', "dax", "strict", "dax"),
    ],
)
def test_flags_win_over_variables_which_win_over_the_file(
    setting: str, in_file: str, in_env: str, flag: Any, env_value: Any
) -> None:
    variable = sources.env_name(setting)
    file_only = resolve(in_file)
    with_env = resolve(in_file, {variable: in_env})
    with_flag = resolve(in_file, {variable: in_env}, **{setting: flag})
    assert getattr(file_only, setting) != getattr(Settings(), setting)
    assert getattr(with_env, setting) == (env_value if env_value is not None else in_env)
    assert getattr(with_flag, setting) == flag


def test_an_empty_upstream_or_region_undoes_an_earlier_source() -> None:
    text = 'upstream = "aws"\nregion = "eu-west-1"\n'
    settings = resolve(text, {"DAXPROXY_UPSTREAM": ""}, region="")
    assert (settings.upstream, settings.region) == (None, None)
    assert resolve('upstream = ""').upstream is None


def test_dax_parameter_names_and_every_hyphenated_key_are_accepted() -> None:
    text = (
        "record-ttl-millis = 1000\nquery-ttl-millis = 2000\nitem-cache-max-bytes = 0\n"
        "log-requests = true\nshutdown-timeout-millis = 500\n"
    )
    settings = resolve(text)
    assert (settings.record_ttl_millis, settings.query_ttl_millis) == (1000, 2000)
    assert (settings.item_cache_max_bytes, settings.log_requests) == (0, True)
    assert settings.shutdown_timeout_millis == 500


def test_one_setting_in_both_spellings_is_an_error() -> None:
    with pytest.raises(SettingError) as caught:
        resolve("record_ttl_millis = 1000\nrecord-ttl-millis = 2000\n")
    assert caught.value.setting == "record_ttl_millis"
    assert "twice" in str(caught.value) and PATH in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("record_ttl = 1000", "record_ttl"),
        ("Port = 1", "Port"),
        ("record_ttl-millis = 1", "record_ttl-millis"),
        ("config = 'other.toml'", "config"),
        ("[daxproxy]\nport = 1", "daxproxy"),
    ],
)
def test_an_unknown_file_key_is_an_error(text: str, key: str) -> None:
    with pytest.raises(SettingError) as caught:
        resolve(text)
    assert caught.value.setting == key
    assert "is not a setting" in str(caught.value) and PATH in str(caught.value)


def test_an_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(SettingError, match="did you mean 'record_ttl_millis'"):
        resolve("record_ttl = 1000")
    with pytest.raises(SettingError, match="did you mean 'DAXPROXY_RECORD_TTL_MILLIS'"):
        resolve(environ={"DAXPROXY_RECORD_TTL": "1000"})


@pytest.mark.parametrize(
    ("text", "suggestion"),
    [
        # DAX's hyphenated spelling gets a hyphenated answer, the name gets the name.
        ("record-ttl-milis = 1000", "'record-ttl-millis'"),
        ("query-ttl = 1000", "'query-ttl-millis'"),
        ("record_ttl_milis = 1000", "'record_ttl_millis'"),
        ("Record-TTL-Millis = 1000", "'record-ttl-millis'"),
        ("record_ttl-milis = 1000", "'record_ttl_millis'"),  # mixed: the setting's name
    ],
)
def test_a_file_key_is_answered_in_its_own_spelling(text: str, suggestion: str) -> None:
    with pytest.raises(SettingError) as caught:
        resolve(text)
    assert str(caught.value).endswith(f"; did you mean {suggestion}?")


@pytest.mark.parametrize(
    "variable", ["DAXPROXY_RECORD_TTL", "DAXPROXY_port", "DAXPROXY_", "DAXPROXY_CONFIGURATION"]
)
def test_an_unknown_daxproxy_variable_is_an_error(variable: str) -> None:
    with pytest.raises(SettingError) as caught:
        resolve(environ={variable: "1"})
    assert caught.value.setting == variable


def test_other_variables_and_the_config_variable_are_not_settings() -> None:
    environ = {"PATH": "/bin", "AWS_REGION": "eu-west-1", "DAXPROXY_CONFIG": "x.toml"}
    assert resolve(environ=environ) == Settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DAXPROXY_SERVICE_HOST", "10.0.0.7"),
        ("DAXPROXY_SERVICE_PORT", "8111"),
        ("DAXPROXY_SERVICE_PORT_HTTP", "8111"),
        ("DAXPROXY_PORT", "tcp://10.0.0.7:8111"),
        ("DAXPROXY_PORT_8111_TCP", "tcp://10.0.0.7:8111"),
        ("DAXPROXY_PORT_8111_TCP_PROTO", "tcp"),
        ("DAXPROXY_PORT_8111_TCP_PORT", "8111"),
        ("DAXPROXY_PORT_8111_TCP_ADDR", "10.0.0.7"),
        ("DAXPROXY_ADMIN_SERVICE_HOST", "10.0.0.8"),  # a Service named daxproxy-admin
        ("DAXPROXY_ADMIN_PORT", "tcp://10.0.0.8:80"),
    ],
)
def test_kubernetes_service_variables_are_ignored_and_listed(variable: str, value: str) -> None:
    layer = sources.from_environ({variable: value})
    assert layer.values == {} and layer.ignored == (variable,)


def test_a_port_variable_that_is_not_a_service_link_is_a_setting() -> None:
    assert sources.from_environ({"DAXPROXY_PORT": "9000"}).values == {"port": 9000}
    with pytest.raises(SettingError, match="DAXPROXY_PORT"):
        sources.from_environ({"DAXPROXY_PORT": "http://10.0.0.7:8111"})


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("true", True),
        ("TRUE", True),
        ("True", True),
        ("1", True),
        ("yes", True),
        ("Yes", True),
        (" true ", True),
        ("false", False),
        ("FALSE", False),
        ("0", False),
        ("no", False),
        ("NO", False),
    ],
)
def test_environment_booleans(raw: str, value: bool) -> None:
    for setting in ("admin", "log_requests", "metrics_per_table"):
        variable = sources.env_name(setting)
        assert getattr(resolve(environ={variable: raw}), setting) is value


@pytest.mark.parametrize(
    ("text", "environ", "flags", "workers"),
    [
        ("workers = 4", {}, {}, 4),
        ('workers = "auto"', {}, {}, "auto"),
        ("", {"DAXPROXY_WORKERS": "3"}, {}, 3),
        ("", {"DAXPROXY_WORKERS": " AUTO "}, {}, "auto"),
        ("workers = 4", {"DAXPROXY_WORKERS": "auto"}, {"workers": 2}, 2),
        ("", {}, {"workers": "auto"}, "auto"),
    ],
)
def test_workers_is_a_number_or_auto_in_every_source(
    text: str, environ: dict[str, str], flags: dict[str, object], workers: object
) -> None:
    assert resolve(text, environ, **flags).workers == workers


def test_a_workers_file_value_of_the_wrong_type_says_what_it_accepts() -> None:
    with pytest.raises(SettingError) as caught:
        resolve("workers = 1.5")
    assert "must be a whole number or 'auto', not the float 1.5" in str(caught.value)


@pytest.mark.parametrize(("raw", "value"), [("1000", 1000), (" 1000\n", 1000), ("1_000", 1000)])
def test_environment_numbers(raw: str, value: int) -> None:
    assert resolve(environ={"DAXPROXY_RECORD_TTL_MILLIS": raw}).record_ttl_millis == value


# For every setting: a value of the wrong type or out of range, as a file gives it (TOML
# typed) and as a variable gives it (a string).
BAD_FILE_VALUES: dict[str, list[str]] = {
    "host": ['""', "5"],
    "port": ['"8111"', "70000", "-1", "80.0"],
    "upstream": ['"localhost:8000"', "5", "true", '"http://me:hunter2@localhost:8000"'],
    "region": ['"mars"', "[]"],
    "connect_timeout_millis": ["0", '"2000"'],
    "request_timeout_millis": ["-5", "1.5"],
    "max_body_bytes": ["10", "{}"],
    "upstream_max_connections": ["0", "true"],
    "item_cache_max_bytes": ["-1", '"256MiB"'],
    "record_ttl_millis": ["-1", '"5m"', "1979-05-27"],
    "query_ttl_millis": ["-1", '"1000"'],
    "query_cache_max_bytes": ["-1", "1e6"],
    "mode": ['"fast"', "1"],
    "coherence": ['"stream"', "true"],
    "admin": ['"yes"', "1"],
    "log_level": ['"loud"', '"INFO"'],
    "log_format": ['"xml"', "false"],
    "log_requests": ['"true"', "0"],
    "metrics_per_table": ['"false"', "[true]"],
    "shutdown_timeout_millis": ["-1", "3600001", '"10s"'],
    "event_loop": ['"trio"', "true"],
    "auth_file": ["5", "true"],
    "data_dir": ["5", "true"],
    "dax_endpoint": ['"dax.example:9000"', '"10.0.0.1"', "9000"],
    "auth_clock_skew_millis": ["999", '"5m"'],
    "tls_cert_file": ["1", "[]"],
    "tls_key_file": ["false", "{}"],
    "max_in_flight": ["-1", '"1024"'],
    "max_client_connections": ["-1", "1000001"],
    "max_header_bytes": ["1023", "true"],
    "client_read_timeout_millis": ["99", '"30s"'],
    "client_idle_timeout_millis": ["0", "1.5"],
    "breaker_failures": ["-1", '"5"'],
    "breaker_cooldown_millis": ["0", "3600001"],
    "stale_grace_millis": ["-1", '"1h"'],
    "workers": ["0", "1025", '"many"', '"2"', "true", "1.5", '""'],
}
BAD_ENV_VALUES: dict[str, list[str]] = {
    "host": [""],
    "port": ["eighty", "70000", "8111.0", "0x1f"],
    "upstream": ["localhost:8000", "ftp://x"],
    "region": ["mars", "us_east_1"],
    "connect_timeout_millis": ["0", "2s"],
    "request_timeout_millis": ["-5", ""],
    "max_body_bytes": ["10", "16MiB"],
    "upstream_max_connections": ["0", "many"],
    "item_cache_max_bytes": ["-1", "1e9"],
    "record_ttl_millis": ["-1", "5m"],
    "query_ttl_millis": ["-1", "1,000"],
    "query_cache_max_bytes": ["-1", "_1"],
    "mode": ["fast", "DAX"],
    "coherence": ["stream", "STREAMS"],
    "admin": ["maybe", "2", "on"],
    "log_level": ["loud"],
    "log_format": ["xml"],
    "log_requests": ["2", ""],
    "metrics_per_table": ["enabled"],
    "shutdown_timeout_millis": ["-1", "soon"],
    "event_loop": ["trio", "UVLOOP"],
    "auth_clock_skew_millis": ["0", "5m"],
    "max_in_flight": ["-1", "lots"],
    "max_client_connections": ["-1", "1e3"],
    "max_header_bytes": ["10", "16KiB"],
    "client_read_timeout_millis": ["0", "30s"],
    "client_idle_timeout_millis": ["99", ""],
    "breaker_failures": ["-1", "five"],
    "breaker_cooldown_millis": ["0", "5s"],
    "stale_grace_millis": ["-1", "1h"],
    "workers": ["0", "-2", "many", "", "2.5", "1025"],
    "dax_endpoint": ["localhost:9000", "10.0.0.1:0", "::1:9000"],
}


# Any string is a path; whether the file is there and holds what it should is checked when
# the proxy starts, by the modules that read the files.
PATH_SETTINGS = {"auth_file", "tls_cert_file", "tls_key_file", "data_dir"}


def test_every_setting_has_bad_values_to_try() -> None:
    assert set(BAD_FILE_VALUES) == set(Settings.names())
    assert set(BAD_ENV_VALUES) == set(Settings.names()) - PATH_SETTINGS


@pytest.mark.parametrize(
    ("setting", "value"), [(s, v) for s, values in BAD_FILE_VALUES.items() for v in values]
)
def test_a_bad_file_value_names_the_setting_and_the_file(setting: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        resolve(f"{setting} = {value}")
    assert caught.value.setting == setting
    assert repr(setting) in str(caught.value) and PATH in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "value"), [(s, v) for s, values in BAD_ENV_VALUES.items() for v in values]
)
def test_a_bad_variable_names_the_setting_and_the_variable(setting: str, value: str) -> None:
    with pytest.raises(SettingError) as caught:
        resolve(environ={sources.env_name(setting): value})
    assert caught.value.setting == setting
    assert sources.env_name(setting) in str(caught.value)


def test_a_type_error_says_what_the_setting_accepts() -> None:
    with pytest.raises(SettingError) as caught:
        resolve('port = "8111"')
    assert "must be a whole number, not the string '8111'" in str(caught.value)
    with pytest.raises(SettingError, match="must be true or false, not the integer 1"):
        resolve("admin = 1")
    with pytest.raises(SettingError, match=r"true or false .*not 'maybe'"):
        resolve(environ={"DAXPROXY_ADMIN": "maybe"})


def test_a_bad_value_is_an_error_even_where_a_later_source_overrides_it() -> None:
    with pytest.raises(SettingError, match=r"from /etc/daxproxy\.toml"):
        resolve("port = 70000", {"DAXPROXY_PORT": "9000"}, port=9001)


def test_a_bad_flag_names_the_flag() -> None:
    with pytest.raises(SettingError, match=r"\(from --record-ttl-millis\)"):
        resolve(record_ttl_millis=-1)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("port = \n", "line 1, column 8"),
        ("port = 1\n[oops\n", "line 2"),
        ("port = 1\nport = 2\n", ""),
    ],
)
def test_a_file_that_is_not_toml_names_the_file_and_the_place(text: str, where: str) -> None:
    with pytest.raises(ConfigFileError) as caught:
        sources.from_toml(text, PATH)
    assert caught.value.path == PATH
    assert PATH in str(caught.value) and where in str(caught.value)


def test_describe_says_where_each_setting_came_from() -> None:
    layers = (
        sources.from_toml("port = 9000\nmode = 'dax'\n", PATH),
        sources.from_environ({"DAXPROXY_ADMIN": "yes"}),
        sources.from_flags({"record_ttl_millis": 1000}),
    )
    text = sources.describe(sources.resolve(*layers), *layers)
    assert "port=9000 (/etc/daxproxy.toml, key 'port')" in text
    assert "mode='dax' (/etc/daxproxy.toml, key 'mode')" in text
    assert "admin=True (DAXPROXY_ADMIN)" in text
    assert "record_ttl_millis=1000 (--record-ttl-millis)" in text
    assert "host" not in text
    assert sources.describe(Settings(), Layer()) == "all defaults"


def test_an_upstream_url_with_credentials_is_refused_without_repeating_them() -> None:
    with pytest.raises(SettingError) as caught:
        resolve(environ={"DAXPROXY_UPSTREAM": "https://AKIDEXAMPLE:hunter2@dynamo.internal"})
    assert caught.value.setting == "upstream"
    assert "hunter2" not in str(caught.value) and "AKIDEXAMPLE" not in str(caught.value)
