"""Logging: text or JSON lines, redaction of secrets, and the per-request log.

:func:`configure_logging` gives the root logger one handler on ``stream``: with the
``log_format`` setting ``text``, ``<time> <LEVEL> <logger>: <message>``; with ``json``, one
JSON object per line, ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``, the
fields of a structured record (:data:`FIELDS`) and ``exception`` (its traceback) when there
is one. Times are UTC in both. ``log_level`` applies to every logger, libraries included.

A logged exception shows its traceback but never its message (:func:`exception_text`):
a message can quote the data being handled. Both formats pass every line through
:func:`redact`, belt and braces: the proxy never logs a
credential, a signature or an item, and should a library's debug line hold a SigV4
``Credential=``/``Signature=`` value, an access key id, or a labelled secret or session
token, the line shows ``<redacted>`` instead.

:class:`RequestLog` is an observer of the proxy (``observed(outcome)``): one INFO line per
client request on the ``daxproxy.requests`` logger, holding only the operation, table,
cache outcome, status, error name, time and protocol (``http``, ``dax``), and with several
workers the worker's number.
With ``log_requests`` on, those lines are written whatever ``log_level`` says.
"""

from __future__ import annotations

import datetime
import logging
import re
import traceback
from typing import IO, Any, Protocol

import orjson

from daxproxy.core.config import Settings

REQUEST_LOGGER = "daxproxy.requests"
# The record attribute (set through ``extra``) holding a structured record's fields.
FIELDS = "daxproxy_fields"

_REDACTED = "<redacted>"
_VALUE = r"[^\s,;&\"'\\<>]+"
_SECRETS = (
    # SigV4, in an Authorization header or a presigned URL's query.
    re.compile(rf"(?i)\b((?:x-amz-)?(?:credential|signature|security-token)=){_VALUE}"),
    # A labelled secret or token, in a header or dict repr, JSON, INI or environment.
    re.compile(
        r"(?i)((?:aws_)?secret_access_key|secretaccesskey|secret_key|(?:aws_)?session_token"
        r"|sessiontoken|x-amz-security-token|security_token)"
        rf"([\"']?\s*[:=]\s*b?[\"']?){_VALUE}"
    ),
    # The same in XML, as STS answers.
    re.compile(r"(<(SecretAccessKey|SessionToken)>)[^<]*"),
)
# Access key ids of credentials (long-term AKIA, temporary ASIA).
_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
# Anything shaped like a secret access key: 40 characters of base64, mixed case and digits.
_SECRET_SHAPE = re.compile(
    r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[a-z])"
    r"(?=[A-Za-z0-9/+]*[0-9])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)


def redact(text: str) -> str:
    """``text`` with anything that looks like an AWS credential or signature replaced."""
    text = _SECRETS[0].sub(rf"\1{_REDACTED}", text)
    text = _SECRETS[1].sub(rf"\1\2{_REDACTED}", text)
    text = _SECRETS[2].sub(rf"\1{_REDACTED}", text)
    text = _KEY_ID.sub(_REDACTED, text)
    return _SECRET_SHAPE.sub(_REDACTED, text)


def exception_text(exc: BaseException) -> str:
    """A traceback with every frame but no exception message, causes and contexts included.

    A message can quote what the code was handling (a key, an attribute value, a header),
    so a logged traceback names each exception's type and where it was raised, never its
    message.
    """
    lines: list[str] = []
    seen: set[int] = set()

    def add(current: BaseException) -> None:
        seen.add(id(current))
        cause = current.__cause__
        context = None if current.__suppress_context__ else current.__context__
        if cause is not None and id(cause) not in seen:
            add(cause)
            lines.append("\nThe above exception was the direct cause of the following:\n\n")
        elif context is not None and id(context) not in seen:
            add(context)
            lines.append("\nDuring handling of the above exception, another occurred:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(current.__traceback__))
        kind = type(current)
        name = (
            kind.__qualname__
            if kind.__module__ == "builtins"
            else f"{kind.__module__}.{kind.__qualname__}"
        )
        lines.append(f"{name} (message withheld)\n")

    add(exc)
    return "".join(lines).rstrip("\n")


def _utc(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger>: <message>``, the traceback on the lines after, redacted."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(f"{_utc(record)} {super().format(record)}")

    def formatException(self, ei: Any) -> str:
        return exception_text(ei[1])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _utc(record),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            for name, value in fields.items():
                if name not in line:
                    line[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = record.exc_text or exception_text(record.exc_info[1])
        if record.exc_text:
            line["exception"] = redact(record.exc_text)
        if record.stack_info:
            line["stack"] = redact(self.formatStack(record.stack_info))
        return orjson.dumps(line, default=str).decode()


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs, so that it can replace its own."""


def configure_logging(settings: Settings, stream: IO[str]) -> logging.Handler:
    """Log to ``stream`` at ``log_level`` in ``log_format``; replaces an earlier call's set-up."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, _Handler):
            root.removeHandler(handler)
    handler = _Handler(stream)
    handler.setFormatter(JsonFormatter() if settings.log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Asked for, the request lines are written even when log_level is warning or error.
    logging.getLogger(REQUEST_LOGGER).setLevel(
        logging.INFO if settings.log_requests else logging.NOTSET
    )
    return handler


class RequestOutcome(Protocol):
    """What :class:`RequestLog` reads of an outcome (``daxproxy.service.observe.Outcome``)."""

    @property
    def operation(self) -> str: ...
    @property
    def table(self) -> str | None: ...
    @property
    def cache(self) -> str: ...
    @property
    def status(self) -> int: ...
    @property
    def error_type(self) -> str | None: ...
    @property
    def seconds(self) -> float: ...
    @property
    def protocol(self) -> str: ...


class RequestLog:
    """An observer of the proxy: one INFO line per client request, and nothing else in it.

    Never the key, the item, the expression values or any header: only the fields of the
    outcome, which name the operation, the table, what the cache did, how it ended, and the
    protocol the client spoke.
    """

    def __init__(self, logger: logging.Logger | None = None, worker: int | None = None) -> None:
        self._log = logger or logging.getLogger(REQUEST_LOGGER)
        self._worker = worker
        self._format = "%s table=%s cache=%s status=%d error=%s seconds=%.6f protocol=%s" + (
            "" if worker is None else " worker=%d"
        )

    def observed(self, outcome: RequestOutcome) -> None:
        if not self._log.isEnabledFor(logging.INFO):
            return
        fields = {
            "operation": outcome.operation,
            "table": outcome.table,
            "cache": outcome.cache,
            "status": outcome.status,
            "error_type": outcome.error_type,
            "seconds": round(outcome.seconds, 6),
            "protocol": outcome.protocol,
        }
        args: tuple[object, ...] = (
            outcome.operation,
            outcome.table or "-",
            outcome.cache,
            outcome.status,
            outcome.error_type or "-",
            outcome.seconds,
            outcome.protocol,
        )
        if self._worker is not None:
            fields["worker"] = self._worker
            args += (self._worker,)
        self._log.info(self._format, *args, extra={FIELDS: fields})


def request_log(settings: Settings, worker: int | None = None) -> RequestLog | None:
    """The request log when the ``log_requests`` setting asks for it, else None;
    ``worker``: the worker process's number, named on each line."""
    return RequestLog(worker=worker) if settings.log_requests else None
