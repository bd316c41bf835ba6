"""Where settings come from: a TOML file, ``DAXPROXY_*`` environment variables, flags.

Pure functions over strings and mappings; reading the file is the edge's job. Each source
becomes a :class:`Layer`: the values it gives, by setting name, and where each one came
from (``--port``, ``DAXPROXY_PORT``, a file and key), so that an error can say.
:func:`resolve` checks every layer on its own, so a bad value is an error even where a
later source overrides it, then stacks them in rising precedence: the defaults of
:class:`Settings`, the file, the environment, the flags.

Spellings: a file key is the setting's name, ``record_ttl_millis``, or its hyphenated form,
``record-ttl-millis`` (DAX's parameter names); giving one setting in both is an error. An
environment variable is ``DAXPROXY_`` and the name in capitals, ``DAXPROXY_RECORD_TTL_MILLIS``;
``DAXPROXY_CONFIG`` names the file. Environment booleans are true/false, 1/0 or yes/no in
any case; ``workers`` is a whole number or the word ``auto`` in every source. For a setting
whose default is "not set" (``upstream``, ``region``), an empty string in any source means
"not set", so a later source can undo an earlier one.

An unknown key, an unknown ``DAXPROXY_*`` variable or a value of the wrong type raises
:class:`SettingError` naming the setting; a file that is not TOML raises
:class:`ConfigFileError` naming the file, line and column. The variables Kubernetes defines
for a Service named ``daxproxy`` (``DAXPROXY_SERVICE_HOST``, ``DAXPROXY_PORT=tcp://...``)
are not settings: they are ignored, and listed in :attr:`Layer.ignored`.
"""

from __future__ import annotations

import datetime
import difflib
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daxproxy.core.config import AUTO_WORKERS, SettingError, Settings

ENV_PREFIX = "DAXPROXY_"
CONFIG_ENV = "DAXPROXY_CONFIG"  # the settings file's path; not a setting itself

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+(?:_[0-9]+)*\Z")
_ACCEPTS = {int: "a whole number", bool: "true or false", str: "a string"}
_COUNT_OR_WORD = f"a whole number or {AUTO_WORKERS!r}"
# What Kubernetes defines in every container for each Service of the namespace (the
# "service links"): for a Service named daxproxy or daxproxy-*, these would look like ours.
_SERVICE_LINK_NAME = re.compile(
    r"DAXPROXY_(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT_[0-9]+_(?:TCP|UDP|SCTP)(?:_PROTO|_PORT|_ADDR)?)\Z"
)
_SERVICE_LINK_PORT = re.compile(r"DAXPROXY_(?:[A-Z0-9_]+_)?PORT\Z")
_SERVICE_LINK_VALUE = re.compile(r"(?:tcp|udp|sctp)://", re.IGNORECASE)


class ConfigFileError(ValueError):
    """The settings file cannot be read, or is not TOML."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"config file {path!r}: {problem}")
        self.path = path
        self.problem = problem


def _kinds() -> tuple[dict[str, type], frozenset[str], frozenset[str]]:
    """Each setting's type (int, bool or str), which settings may be None, and which are a
    whole number or a word (``workers``: 4 or "auto"; their kind is int)."""
    hints = typing.get_type_hints(Settings)
    kinds: dict[str, type] = {}
    optional: set[str] = set()
    worded: set[str] = set()
    for name in Settings.names():
        hint = hints[name]
        args = set(typing.get_args(hint))
        if hint in (int, bool, str):
            kinds[name] = hint
        elif args == {str, types.NoneType}:
            kinds[name] = str
            optional.add(name)
        elif args == {int, str}:
            kinds[name] = int
            worded.add(name)
        else:  # pragma: no cover - a new kind of setting needs a parser here first
            raise TypeError(f"settings_sources cannot read setting {name!r} of type {hint}")
    return kinds, frozenset(optional), frozenset(worded)


KINDS, OPTIONAL, WORDED = _kinds()


def env_name(setting: str) -> str:
    return ENV_PREFIX + setting.upper()


def file_key(setting: str) -> str:
    """The hyphenated spelling, as DAX spells its parameters."""
    return setting.replace("_", "-")


@dataclass(frozen=True)
class Layer:
    """What one source says: values by setting name, and where each came from."""

    values: Mapping[str, Any] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)
    ignored: tuple[str, ...] = ()  # names the source held that are not settings by design


def from_toml(text: str, path: str) -> Layer:
    """The settings a TOML document gives; ``path`` names it in errors."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(path, f"not valid TOML: {exc}") from None
    return from_document(document, path)


def from_document(document: Mapping[str, Any], path: str) -> Layer:
    """The settings of a parsed TOML document, each checked for its type."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key, value in document.items():
        name = key.replace("-", "_")
        if name not in KINDS or key not in (name, file_key(name)):
            hint = _did_you_mean(key, hyphens="-" in key and "_" not in key)
            raise SettingError(key, f"is not a setting (in {path}){hint}")
        origin = f"{path}, key {key!r}"
        if name in origins:
            raise SettingError(
                name, f"is given twice in {path}, as {name!r} and as {file_key(name)!r}"
            )
        kind = KINDS[name]
        # bool is an int subclass: compare types exactly
        if type(value) is not kind and not (name in WORDED and type(value) is str):
            accepts = _COUNT_OR_WORD if name in WORDED else _ACCEPTS[kind]
            raise SettingError(name, f"must be {accepts}, not {_toml_repr(value)} (from {origin})")
        values[name] = _unset_if_empty(name, value)
        origins[name] = origin
    return Layer(values, origins)


def from_environ(environ: Mapping[str, str]) -> Layer:
    """The settings ``DAXPROXY_*`` variables give; other variables are not looked at."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    ignored: list[str] = []
    for variable in sorted(environ):
        if not variable.startswith(ENV_PREFIX) or variable == CONFIG_ENV:
            continue
        raw = environ[variable]
        if _is_service_link(variable, raw):
            ignored.append(variable)
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        if name not in KINDS or variable != env_name(name):
            hint = _did_you_mean(name, prefix=ENV_PREFIX, upper=True)
            raise SettingError(variable, f"is not a setting{hint}")
        values[name] = _parse_env(name, variable, raw.strip())
        origins[name] = variable
    return Layer(values, origins, tuple(ignored))


def from_flags(given: Mapping[str, Any]) -> Layer:
    """The settings given on the command line, already typed by the parser."""
    values = {name: _unset_if_empty(name, value) for name, value in given.items()}
    return Layer(values, {name: "--" + file_key(name) for name in given})


def resolve(*layers: Layer) -> Settings:
    """The settings the layers give, later layers winning; each layer is checked alone."""
    merged: dict[str, Any] = {}
    for layer in layers:
        try:
            Settings(**layer.values)
        except SettingError as exc:
            origin = layer.origins.get(exc.setting)
            problem = exc.problem if origin is None else f"{exc.problem} (from {origin})"
            raise SettingError(exc.setting, problem) from None
        merged.update(layer.values)
    return Settings(**merged)


def describe(settings: Settings, *layers: Layer) -> str:
    """The settings that differ from the defaults, each with its source, for a log line."""
    origins: dict[str, str] = {}
    for layer in layers:
        origins.update(layer.origins)
    defaults = Settings()
    parts = [
        f"{name}={getattr(settings, name)!r} ({origins.get(name, 'default')})"
        for name in Settings.names()
        if getattr(settings, name) != getattr(defaults, name) or name in origins
    ]
    return ", ".join(parts) or "all defaults"


def _parse_env(name: str, variable: str, raw: str) -> Any:
    kind = KINDS[name]
    if kind is bool:
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise SettingError(name, f"{variable} must be true or false (or 1/0, yes/no), not {raw!r}")
    if kind is int:
        if name in WORDED and raw and not _WHOLE_NUMBER.match(raw):
            return raw.lower()  # a word, checked by Settings
        if not _WHOLE_NUMBER.match(raw):
            raise SettingError(name, f"{variable} must be a whole number, not {raw!r}")
        return int(raw)
    return _unset_if_empty(name, raw)


def _unset_if_empty(name: str, value: Any) -> Any:
    return None if name in OPTIONAL and value == "" else value


def _is_service_link(variable: str, raw: str) -> bool:
    if _SERVICE_LINK_NAME.match(variable):
        return True
    return bool(_SERVICE_LINK_PORT.match(variable) and _SERVICE_LINK_VALUE.match(raw))


def _did_you_mean(key: str, prefix: str = "", upper: bool = False, hyphens: bool = False) -> str:
    """The closest setting, spelled as the user spells: ``hyphens`` for a file key written
    with hyphens only (``record-ttl-milis``: ``record-ttl-millis``), else the name."""
    spelled = key.lower().replace("-", "_")
    close = difflib.get_close_matches(spelled, KINDS, n=1)
    if not close:
        return "; daxproxy --help lists every setting"
    name = file_key(close[0]) if hyphens else close[0]
    suggestion = prefix + (name.upper() if upper else name)
    return f"; did you mean {suggestion!r}?"


_TOML_TYPES = (
    (bool, "the boolean"),
    (int, "the integer"),
    (float, "the float"),
    (str, "the string"),
    (list, "an array"),
    (dict, "a table"),
    (datetime.date | datetime.time, "the date/time"),
)


def _toml_repr(value: Any) -> str:
    """A value as the TOML file wrote it: ``the string '8111'``."""
    for kind, described in _TOML_TYPES:
        if isinstance(value, kind):
            if kind in (list, dict):
                return described
            if isinstance(value, bool):
                return f"{described} {str(value).lower()}"
            if isinstance(value, str):
                return f"{described} {value!r}"
            return f"{described} {value}"
    return repr(value)  # pragma: no cover - TOML has no other types
