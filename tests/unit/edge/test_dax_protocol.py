"""The DAX connection protocol with a fake transport and a service that holds its answers."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from daxproxy.dax import cbor, methods
from daxproxy.dax.session import Request
from daxproxy.edge.dax_protocol import MAX_PENDING, DaxProtocol, advertised, endpoint
from daxproxy.service.dax_calls import DaxService
from tests.unit.dax.real_client import drive

PREAMBLE = b"".join(cbor.dumps(x) for x in ("J7yne5G", 0, b"s", {"UserAgent": "t"}, 0))
ENDPOINTS = cbor.dumps(1) + cbor.dumps(methods.ENDPOINTS.id)
AUTH = (
    cbor.dumps(1)
    + cbor.dumps(methods.AUTHORIZE_CONNECTION.id)
    + b"".join(cbor.dumps(x) for x in ("AKID", "0" * 64, b"to sign", None, None))
)


class FakeTransport(asyncio.Transport):
    def __init__(self, sockname: tuple[str, int] = ("127.0.0.1", 8111)) -> None:
        super().__init__()
        self.sockname = sockname
        self.written = bytearray()
        self.closed = False
        self.paused = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sockname if name == "sockname" else default

    def write(self, data: Any) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


class HeldService:
    """Answers each request with its method's name, once the test releases it."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[tuple[Request, tuple[bytes, int]]] = []

    def connection(self) -> HeldService:
        return self

    async def answer(self, request: Request, endpoint: tuple[bytes, int]) -> bytes | None:
        self.seen.append((request, endpoint))
        await self.release.wait()
        return request.method.name.encode() if request.method.replies else None


def _connect(service: HeldService) -> tuple[DaxProtocol, FakeTransport]:
    protocol = DaxProtocol(service, max_bytes=1024)  # type: ignore[arg-type]
    transport = FakeTransport()
    protocol.connection_made(transport)
    return protocol, transport


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_answers_in_order_and_auth_gets_none() -> None:
    service = HeldService()
    protocol, transport = _connect(service)
    protocol.data_received(PREAMBLE + AUTH + ENDPOINTS + ENDPOINTS)
    await _settle()
    assert transport.written == b""
    service.release.set()
    await _settle()
    assert transport.written == b"endpointsendpoints"
    # The endpoint the client reached, packed, for the endpoints answer.
    assert service.seen[0][1] == (b"\x7f\x00\x00\x01", 8111)


async def test_broken_framing_closes_the_connection() -> None:
    protocol, transport = _connect(HeldService())
    protocol.data_received(PREAMBLE + cbor.dumps(1) + cbor.dumps(12345))
    assert transport.closed


async def test_reading_pauses_while_too_many_requests_wait() -> None:
    service = HeldService()
    protocol, transport = _connect(service)
    protocol.data_received(PREAMBLE + ENDPOINTS * (MAX_PENDING + 2))
    assert transport.paused
    service.release.set()
    await _settle()
    assert not transport.paused
    assert transport.written == b"endpoints" * (MAX_PENDING + 2)


async def test_a_lost_connection_stops_its_work() -> None:
    service = HeldService()
    protocol, transport = _connect(service)
    protocol.data_received(PREAMBLE + ENDPOINTS + ENDPOINTS)
    await _settle()
    protocol.connection_lost(None)
    service.release.set()
    await _settle()
    assert transport.written == b""
    assert len(service.seen) == 1


class InstantService:
    """Answers endpoints at once (as a cache hit is) and waits on the rest until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def answer(self, request: Request, endpoint: tuple[bytes, int]) -> bytes | None:
        if request.method is not methods.ENDPOINTS:
            await self.release.wait()
        return request.method.name.encode() if request.method.replies else None


KEY_SCHEMA = cbor.dumps(1) + cbor.dumps(methods.DEFINE_KEY_SCHEMA.id) + cbor.dumps(b"t")


async def test_an_answer_that_needs_no_wait_is_written_from_the_read_itself() -> None:
    service = InstantService()
    protocol, transport = _connect(service)  # type: ignore[arg-type]
    tasks = asyncio.all_tasks()
    protocol.data_received(PREAMBLE + ENDPOINTS + ENDPOINTS)
    assert transport.written == b"endpointsendpoints"  # no turn of the loop needed
    assert asyncio.all_tasks() == tasks and not protocol.busy


async def test_behind_an_answer_that_waits_the_rest_keep_their_order() -> None:
    service = InstantService()
    protocol, transport = _connect(service)  # type: ignore[arg-type]
    protocol.data_received(PREAMBLE + ENDPOINTS + KEY_SCHEMA + ENDPOINTS)
    assert transport.written == b"endpoints" and protocol.busy
    protocol.data_received(ENDPOINTS)
    await _settle()
    assert transport.written == b"endpoints"  # still behind the one that waits
    service.release.set()
    await _settle()
    assert transport.written == b"endpointsdefineKeySchemaendpointsendpoints"
    assert not protocol.busy
    protocol.data_received(ENDPOINTS)
    assert transport.written.endswith(b"defineKeySchemaendpointsendpointsendpoints")


async def test_a_service_fault_closes_the_connection_not_the_process() -> None:
    class Failing:
        async def answer(self, request: Request, endpoint: tuple[bytes, int]) -> bytes | None:
            raise RuntimeError("a fault")

    protocol, transport = _connect(Failing())  # type: ignore[arg-type]
    protocol.data_received(PREAMBLE + ENDPOINTS)
    assert transport.closed and transport.written == b""


async def test_a_service_fault_after_a_wait_closes_the_connection_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    class FailingLater:
        async def answer(self, request: Request, endpoint: tuple[bytes, int]) -> bytes | None:
            await release.wait()
            raise RuntimeError("a fault")

    protocol, transport = _connect(FailingLater())  # type: ignore[arg-type]
    protocol.data_received(PREAMBLE + ENDPOINTS + ENDPOINTS)
    assert protocol.busy
    release.set()
    await _settle()
    assert transport.closed and transport.written == b""
    assert "fault while answering a DAX request" in caplog.text


# The endpoints call: where the clients then connect ---------------------------------------

V4, V6 = advertised("203.0.113.7:9000"), advertised("[2001:db8::7]:9001")
LOOPBACK_V6 = bytes(15) + b"\x01"


@pytest.mark.parametrize(
    ("sockname", "setting", "named"),
    [
        (("127.0.0.1", 8111), None, (b"\x7f\x00\x00\x01", 8111)),
        (("::1", 8111), None, (LOOPBACK_V6, 8111)),
        # An IPv4 client of a dual-stack listener: its socket is IPv4, so 4 bytes.
        (("::ffff:127.0.0.1", 8111), None, (b"\x7f\x00\x00\x01", 8111)),
        (("127.0.0.1", 8111), V4, (bytes([203, 0, 113, 7]), 9000)),
        (("::ffff:127.0.0.1", 8111), V4, (bytes([203, 0, 113, 7]), 9000)),
        (("::1", 8111), V6, (bytes.fromhex("20010db8" + "0" * 22 + "07"), 9001)),
        # The other family: the client would drop the setting's, so its own connection's.
        (("::1", 8111), V4, (LOOPBACK_V6, 8111)),
        (("127.0.0.1", 8111), V6, (b"\x7f\x00\x00\x01", 8111)),
    ],
)
def test_the_endpoint_named_is_the_setting_of_the_clients_family_else_the_socket(
    sockname: tuple[str, int], setting: tuple[bytes, int] | None, named: tuple[bytes, int]
) -> None:
    assert endpoint(sockname, setting) == named


async def test_a_connection_hands_the_service_the_endpoint_to_name() -> None:
    service = HeldService()
    protocol = DaxProtocol(service, max_bytes=1024, advertised=V4)  # type: ignore[arg-type]
    protocol.connection_made(FakeTransport(("::ffff:10.1.2.3", 8111)))
    protocol.data_received(PREAMBLE + ENDPOINTS)
    await _settle()
    assert service.seen[0][1] == (bytes([203, 0, 113, 7]), 9000)
    assert advertised(None) is None


async def test_the_client_reads_the_endpoint_from_the_reply() -> None:
    """The reply's bytes, as the real Python client reads them."""
    no_proxy = SimpleNamespace(access=None)  # endpoints needs no proxy, no tables
    service = DaxService(no_proxy, None)  # type: ignore[arg-type]
    reply = await service.answer(Request(methods.ENDPOINTS, ()), endpoint(("10.0.0.2", 1), V4))
    assert reply is not None
    [named], _ = drive(lambda c: c.endpoints(), reply)
    assert (named["address"], named["port"]) == ("203.0.113.7", 9000)
