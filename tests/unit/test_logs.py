"""Logs: JSON lines that parse, a request log with only its fields, and redaction."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import pytest

from daxproxy.core.config import Settings
from daxproxy.edge.logs import (
    REQUEST_LOGGER,
    JsonFormatter,
    RequestLog,
    TextFormatter,
    configure_logging,
    redact,
    request_log,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """A stand-in of the proxy's outcome (daxproxy.service.observe), of the same shape."""

    operation: str
    table: str | None
    cache: str
    status: int
    error_type: str | None
    seconds: float
    protocol: str = "http"


HIT = Outcome("GetItem", "users", "hit", 200, None, 0.000412)
FAILED = Outcome("PutItem", "orders", "bypass", 400, "ConditionalCheckFailedException", 0.0123)
UNKNOWN = Outcome("Unknown", None, "bypass", 400, "UnknownOperationException", 0.0001)
DAX_HIT = Outcome("GetItem", "users", "hit", 200, None, 0.000412, "dax")

ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SIGNATURE = "fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024"
AUTHORIZATION = (
    f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/20261128/us-east-1/dynamodb/aws4_request, "
    f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={SIGNATURE}"
)
TOKEN = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD"


class Capture:
    """A logger of its own writing through one formatter into a string."""

    def __init__(self, formatter: logging.Formatter, name: str = "test.logs") -> None:
        self.stream = io.StringIO()
        handler = logging.StreamHandler(self.stream)
        handler.setFormatter(formatter)
        self.logger = logging.getLogger(name)
        self.logger.handlers = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.DEBUG)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def objects(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.lines()]


@pytest.fixture
def json_log() -> Iterator[Capture]:
    capture = Capture(JsonFormatter())
    yield capture
    capture.logger.handlers = []


@pytest.fixture
def text_log() -> Iterator[Capture]:
    capture = Capture(TextFormatter(), "test.logs.text")
    yield capture
    capture.logger.handlers = []


def test_json_lines_parse_and_carry_time_level_logger_message(json_log: Capture) -> None:
    json_log.logger.info("listening on %s", "http://127.0.0.1:8111")
    json_log.logger.warning("multi\nline")
    first, second = json_log.objects()
    assert set(first) == {"time", "level", "logger", "message"}
    assert (first["level"], first["logger"]) == ("INFO", "test.logs")
    assert first["message"] == "listening on http://127.0.0.1:8111"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", str(first["time"]))
    assert second["message"] == "multi\nline" and len(json_log.lines()) == 2


def test_a_json_line_holds_the_traceback_without_the_message(json_log: Capture) -> None:
    message = "-".join(("item", "value", "zero"))  # the source line shows the code, not this
    try:
        raise RuntimeError(message)
    except RuntimeError:
        json_log.logger.exception("fault while handling POST /")
    (line,) = json_log.objects()
    assert line["level"] == "ERROR" and line["message"] == "fault while handling POST /"
    text = str(line["exception"])
    assert text.startswith("Traceback (most recent call last):\n")
    assert "in test_a_json_line_holds_the_traceback_without_the_message" in text
    assert text.endswith("\nRuntimeError (message withheld)") and message not in text


def test_a_traceback_withholds_every_message_of_a_chain(text_log: Capture) -> None:
    one, two, three = (f"item-value-{n}" for n in ("one", "two", "three"))
    try:
        try:
            {}[one]
        except KeyError as exc:
            raise ValueError(two) from exc
    except ValueError:
        try:
            raise orjson.JSONDecodeError(three, "doc", 0)
        except ValueError:
            text_log.logger.exception("fault")
    output = text_log.stream.getvalue()
    assert "item-value" not in output
    assert output.count("Traceback (most recent call last):") == 3
    assert "KeyError (message withheld)" in output and "ValueError (message withheld)" in output
    assert "direct cause" in output and "During handling" in output
    assert "orjson.JSONDecodeError (message withheld)" in output


def test_a_text_line_is_time_level_logger_message(text_log: Capture) -> None:
    text_log.logger.info("daxproxy stopped")
    (line,) = text_log.lines()
    assert re.fullmatch(r"\S+Z INFO test\.logs\.text: daxproxy stopped", line)


def test_a_request_line_in_json_has_the_outcome_fields_and_nothing_else(
    json_log: Capture,
) -> None:
    log = RequestLog(json_log.logger)
    for outcome in (HIT, FAILED, UNKNOWN):
        log.observed(outcome)
    hit, failed, unknown = json_log.objects()
    assert set(hit) == {
        "time",
        "level",
        "logger",
        "message",
        "operation",
        "table",
        "cache",
        "status",
        "error_type",
        "seconds",
        "protocol",
    }
    fields = ("operation", "table", "cache", "status", "error_type", "protocol")
    assert {k: hit[k] for k in fields} == {
        "operation": "GetItem",
        "table": "users",
        "cache": "hit",
        "status": 200,
        "error_type": None,
        "protocol": "http",
    }
    assert hit["seconds"] == pytest.approx(0.000412) and hit["level"] == "INFO"
    assert hit["message"] == HIT_MESSAGE
    assert (failed["status"], failed["error_type"]) == (400, "ConditionalCheckFailedException")
    assert (unknown["operation"], unknown["table"]) == ("Unknown", None)


def test_a_request_line_in_text_is_its_fields(text_log: Capture) -> None:
    RequestLog(text_log.logger).observed(FAILED)
    (line,) = text_log.lines()
    assert line.split(" ", 1)[1] == (
        "INFO test.logs.text: PutItem table=orders cache=bypass status=400 "
        "error=ConditionalCheckFailedException seconds=0.012300 protocol=http"
    )


def test_a_request_line_names_the_protocol_the_client_spoke(
    text_log: Capture, json_log: Capture
) -> None:
    RequestLog(text_log.logger).observed(DAX_HIT)
    (line,) = text_log.lines()
    assert line.endswith(" seconds=0.000412 protocol=dax")
    RequestLog(json_log.logger).observed(DAX_HIT)
    (hit,) = json_log.objects()
    assert hit["protocol"] == "dax" and hit["message"].endswith(" protocol=dax")


def test_a_worker_names_itself_on_each_request_line(text_log: Capture, json_log: Capture) -> None:
    RequestLog(text_log.logger, worker=3).observed(HIT)
    (line,) = text_log.lines()
    assert line.endswith(
        "GetItem table=users cache=hit status=200 error=- seconds=0.000412 protocol=http worker=3"
    )
    RequestLog(json_log.logger, worker=3).observed(HIT)
    (hit,) = json_log.objects()
    assert hit["worker"] == 3 and hit["message"].endswith(" worker=3")
    assert request_log(Settings(log_requests=True), worker=2)._worker == 2  # type: ignore[union-attr]


def test_the_request_log_writes_on_its_own_logger() -> None:
    assert RequestLog()._log.name == REQUEST_LOGGER
    assert request_log(Settings()) is None
    assert isinstance(request_log(Settings(log_requests=True)), RequestLog)


def test_the_request_log_is_silent_when_its_logger_is_off(json_log: Capture) -> None:
    json_log.logger.setLevel(logging.WARNING)
    RequestLog(json_log.logger).observed(HIT)
    assert json_log.lines() == []


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    requests_level = logging.getLogger(REQUEST_LOGGER).level
    yield logger
    logger.handlers = handlers
    logger.setLevel(level)
    logging.getLogger(REQUEST_LOGGER).setLevel(requests_level)


def test_configure_logging_sets_level_format_and_request_lines(root: logging.Logger) -> None:
    stream = io.StringIO()
    settings = Settings(log_level="warning", log_format="json", log_requests=True)
    configure_logging(settings, stream)
    logging.getLogger("daxproxy").info("not at warning")
    logging.getLogger("daxproxy").warning("at warning")
    RequestLog().observed(HIT)  # asked for: written although the level is warning
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["at warning", HIT_MESSAGE]
    assert lines[1]["logger"] == REQUEST_LOGGER


HIT_MESSAGE = "GetItem table=users cache=hit status=200 error=- seconds=0.000412 protocol=http"


def test_configure_logging_replaces_its_own_handler(root: logging.Logger) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(Settings(log_format="json"), first)
    configure_logging(Settings(log_level="debug"), second)
    logging.getLogger("daxproxy").debug("once")
    RequestLog().observed(HIT)  # not asked for: the level alone decides
    assert first.getvalue() == ""
    assert second.getvalue().count("once") == 1 and "GetItem" in second.getvalue()
    configure_logging(Settings(log_level="warning"), second)
    RequestLog().observed(HIT)
    assert second.getvalue().count("GetItem") == 1


# --- Redaction ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gone"),
    [
        (f"Authorization: {AUTHORIZATION}", [ACCESS_KEY_ID, SIGNATURE]),
        (str({"Authorization": AUTHORIZATION, "X-Amz-Date": "x"}), [ACCESS_KEY_ID, SIGNATURE]),
        (str({b"Authorization": AUTHORIZATION.encode()}), [ACCESS_KEY_ID, SIGNATURE]),
        (
            f"https://x/?X-Amz-Credential={ACCESS_KEY_ID}%2F2026&X-Amz-Signature={SIGNATURE}",
            [ACCESS_KEY_ID, SIGNATURE],
        ),
        (f"key id {ACCESS_KEY_ID} in a sentence", [ACCESS_KEY_ID]),
        ("temporary ASIAXYZXYZXYZXYZXYZ1 key", ["ASIAXYZXYZXYZXYZXYZ1"]),
        (f"aws_secret_access_key = {SECRET}", [SECRET]),
        (f"AWS_SECRET_ACCESS_KEY={SECRET}", [SECRET]),
        (json.dumps({"SecretAccessKey": "short-secret", "Token": "x"}), ["short-secret"]),
        (f"<SecretAccessKey>short-secret</SecretAccessKey><SessionToken>{TOKEN}", [TOKEN]),
        (str({"X-Amz-Security-Token": TOKEN}), [TOKEN]),
        (f"X-Amz-Security-Token={TOKEN}", [TOKEN]),
        (f"session_token: '{TOKEN}'", [TOKEN]),
        (f"a secret-shaped {SECRET} alone", [SECRET]),
    ],
)
def test_redaction(text: str, gone: list[str]) -> None:
    redacted = redact(text)
    assert "<redacted>" in redacted
    for secret in gone:
        assert secret not in redacted
    assert "short-secret" not in redacted


@pytest.mark.parametrize(
    "text",
    [
        "daxproxy 0.1.0 listening on http://127.0.0.1:8111",
        "upstream https://dynamodb.eu-west-1.amazonaws.com/ (embedded moto), region eu-west-1",
        "request id 3SR0BM6JBMA3KQOTHVRNSNBCHBVV4KQNSO5AEMVJF66Q9ASUAAJG",
        "sha1 " + "a" * 8 + "0123456789abcdef0123456789abcdef",
        "SignedHeaders=content-type;host;x-amz-date",
        "GetItem table=users cache=hit status=200 error=- seconds=0.000412 protocol=dax",
    ],
)
def test_redaction_leaves_ordinary_lines_alone(text: str) -> None:
    assert redact(text) == text


def test_both_formats_redact_messages_arguments_and_tracebacks(
    json_log: Capture, text_log: Capture
) -> None:
    for capture in (json_log, text_log):
        capture.logger.debug("headers: %s", {"Authorization": AUTHORIZATION})
        try:
            raise ValueError(f"bad secret {SECRET}")
        except ValueError:
            capture.logger.exception("fault with %s", ACCESS_KEY_ID)
        output = capture.stream.getvalue()
        for secret in (ACCESS_KEY_ID, SECRET, SIGNATURE):
            assert secret not in output
        assert output.count("<redacted>") >= 3  # an exception's message is not logged at all
    for line in json_log.objects():  # redaction keeps every line valid JSON
        assert line["level"] in ("DEBUG", "ERROR")
