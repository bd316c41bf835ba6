"""Fuzzing DAX's calls, sans-IO: each method with its arity and arguments of random type
and shape is answered with a success or a DAX error, never the proxy's own
InternalServerError (a codec exception other than :class:`~daxproxy.dax.calls.CallError`,
logged with its traceback).

:class:`~daxproxy.service.dax_calls.DaxService` runs as in the server, in front of a fake
proxy that answers each DynamoDB request with a ValidationException or an empty success,
and a fake table registry that knows the two tables of
:mod:`tests.dax_calls_strategies`, whose calls are mostly plausible so that the codec is
met past its first check. The real proxy gets the same calls in
``tests/integration/test_dax_fuzz.py``.

Derandomized; ``FUZZ_EXAMPLES=20000`` makes a longer random hunt.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daxproxy.core import wire
from daxproxy.dax import cbor, errors
from daxproxy.dax.attribute_lists import AttributeLists
from daxproxy.dax.session import Request
from daxproxy.service.dax_calls import DaxService
from daxproxy.service.tables import TableInfo
from tests.dax_calls_strategies import BY_NAME, LIST_NAMES, SCHEMAS, dax_calls

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
ENDPOINT = (b"\x7f\x00\x00\x01", 8111)


class FakeTables:
    async def get(self, table: str) -> TableInfo | None:
        schema = SCHEMAS.get(table)
        return None if schema is None else TableInfo(f"arn:{table}", schema)


class FakeProxy:
    """Answers every request with a ValidationException, or with ``{}`` when ``succeed``."""

    succeed = False
    access = None  # no auth_file

    async def handle(self, request: Any) -> wire.WireResponse:
        if self.succeed:
            return wire.json_response(b"{}")
        body = {"__type": "com.amazon.coral.validate#ValidationException", "message": "no"}
        return wire.WireResponse(400, orjson.dumps(body), [])


@pytest.fixture
def service() -> DaxService:
    lists = AttributeLists()
    for names in LIST_NAMES:
        lists.id_of(names)
    return DaxService(FakeProxy(), FakeTables(), lists)  # type: ignore[arg-type]


@settings(
    max_examples=EXAMPLES or 600,
    deadline=None,
    derandomize=not EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(call=dax_calls(), succeed=st.booleans())
def test_a_call_with_wrong_contents_is_answered_with_a_dax_error_or_a_reply(
    service: DaxService,
    call: tuple[str, list[bytes]],
    succeed: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    name, arguments = call
    request = Request(BY_NAME[name], tuple(cbor.loads(a) for a in arguments))
    service._proxy.succeed = succeed  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="daxproxy"):
        reply = asyncio.run(service.answer(request, ENDPOINT))
    assert not caplog.records, caplog.text
    if reply is None:
        assert not request.method.replies
        return
    items = cbor.loads_all(reply)
    if items[0]:  # an error: never the proxy's own fault
        assert items[2][1] != "InternalServerError", items
        assert tuple(items[0]) != errors.CODES["InternalServerError"], items
