"""Fuzzing DAX's framing, sans-IO: :meth:`Session.receive` over random and cut streams.

- Random bytes after a valid preamble, fed in random pieces, raise nothing but
  :class:`ProtocolError` (and nothing at all while they could still be a request).
- A valid stream (random requests of every method, their arguments random CBOR items in
  every encoding a client may choose: arguments wider than needed, indefinite-length
  strings, arrays and maps, tags, floats of each width) gives the same requests whole, split
  at every byte boundary, and split at random places.

Derandomized, as the edge's fuzz is; ``FUZZ_EXAMPLES=5000`` makes a longer random hunt.
"""

from __future__ import annotations

import os
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daxproxy.dax import cbor
from daxproxy.dax.methods import METHODS
from daxproxy.dax.session import ProtocolError, Request, Session

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=EXAMPLES or 150,
    deadline=None,
    derandomize=not EXAMPLES,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MAX_BYTES = 1 << 16
PREAMBLE = b"".join(cbor.dumps(x) for x in ("J7yne5G", 0, b"s", {"UserAgent": "x"}, 0))
# Method ids in a stable order, each with its arity.
METHOD_IDS = sorted(METHODS)


def head(major: int, argument: int, wide: int) -> bytes:
    """An item's head: ``argument`` in its shortest form, or ``wide`` forms wider."""
    forms = [(24, 1, "B"), (25, 2, ">H"), (26, 4, ">I"), (27, 8, ">Q")]
    if argument < 24 and not wide:
        return bytes([major << 5 | argument])
    fitting = [f for f in forms if argument < 1 << (8 * f[1])]
    info, _, fmt = fitting[min(wide, len(fitting) - 1)]
    return bytes([major << 5 | info]) + struct.pack(fmt, argument)


widths = st.sampled_from([0, 0, 0, 1, 2, 3])


@st.composite
def integers(draw: st.DrawFn) -> bytes:
    value = draw(st.integers(min_value=-(2**64), max_value=2**64 - 1))
    return head(0, value, draw(widths)) if value >= 0 else head(1, -1 - value, draw(widths))


@st.composite
def strings(draw: st.DrawFn) -> bytes:
    text = draw(st.booleans())
    value = draw(st.text(max_size=12)).encode() if text else draw(st.binary(max_size=24))
    major = 3 if text else 2
    if not draw(st.booleans()) or text:  # a text's chunks must each be whole UTF-8
        return head(major, len(value), draw(widths)) + value
    cuts = sorted(draw(st.lists(st.integers(0, len(value)), max_size=3)))
    pieces = [value[a:b] for a, b in zip([0, *cuts], [*cuts, len(value)], strict=True)]
    return bytes([major << 5 | 31]) + b"".join(head(major, len(p), 0) + p for p in pieces) + b"\xff"


floats = st.one_of(
    st.floats(width=16, allow_nan=False).map(lambda f: b"\xf9" + struct.pack(">e", f)),
    st.floats(width=32, allow_nan=False).map(lambda f: b"\xfa" + struct.pack(">f", f)),
    st.floats(allow_nan=False).map(lambda f: b"\xfb" + struct.pack(">d", f)),
)
# A decimal fraction (tag 4): [exponent, mantissa], as the clients write numbers.
decimals = st.tuples(widths, integers(), integers()).map(
    lambda t: head(6, 4, t[0]) + b"\x82" + t[1] + t[2]
)
simple = st.sampled_from([b"\xf4", b"\xf5", b"\xf6"])
leaves = st.one_of(integers(), strings(), floats, decimals, simple)


def containers(inner: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    @st.composite
    def array(draw: st.DrawFn) -> bytes:
        items = draw(st.lists(inner, max_size=4))
        if draw(st.booleans()):
            return b"\x9f" + b"".join(items) + b"\xff"
        return head(4, len(items), draw(widths)) + b"".join(items)

    @st.composite
    def mapping(draw: st.DrawFn) -> bytes:
        keys = draw(st.lists(st.one_of(integers(), strings()), max_size=3))
        pairs = b"".join(k + draw(inner) for k in keys if not k.startswith(b"\x5f"))
        count = sum(1 for k in keys if not k.startswith(b"\x5f"))
        if draw(st.booleans()):
            return b"\xbf" + pairs + b"\xff"
        return head(5, count, draw(widths)) + pairs

    # DAX's own tags: sets, a document path ordinal.
    tags = st.sampled_from([3321, 3322, 3323, 3324])
    tagged = st.tuples(tags, widths, inner).map(lambda t: head(6, t[0], t[1]) + t[2])
    return st.one_of(array(), mapping(), tagged)


items = st.recursive(leaves, containers, max_leaves=12)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    """The preamble, then one to four requests of random methods with random arguments."""
    out = [PREAMBLE]
    for method_id in draw(st.lists(st.sampled_from(METHOD_IDS), min_size=1, max_size=4)):
        arity = METHODS[method_id].arity
        arguments = draw(st.lists(items, min_size=arity, max_size=arity))
        out += [head(0, 1, draw(widths)), cbor.dumps(method_id), *arguments]
    return b"".join(out)


def whole(stream: bytes) -> list[Request] | None:
    """The requests of the stream received at once (None: it breaks DAX's framing)."""
    try:
        return Session(MAX_BYTES).receive(stream)
    except ProtocolError:
        return None


def in_pieces(stream: bytes, cuts: list[int]) -> tuple[list[Request], ProtocolError | None]:
    session, requests, start = Session(MAX_BYTES), [], 0
    for end in [*sorted(set(cuts)), len(stream)]:
        try:
            requests += session.receive(stream[start:end])
        except ProtocolError as error:
            return requests, error
        start = end
    return requests, None


def same(a: Any, b: Any) -> bool:
    """Equal, with -0.0 told from 0.0 (a float's sign is part of the value sent)."""
    return repr(a) == repr(b)


@FUZZ
@given(
    data=st.binary(max_size=200),
    cuts=st.lists(st.integers(0, 200 + len(PREAMBLE)), max_size=6),
)
def test_random_bytes_after_the_preamble_raise_only_protocol_errors(
    data: bytes, cuts: list[int]
) -> None:
    stream = PREAMBLE + data
    requests, _ = in_pieces(stream, [c for c in cuts if c <= len(stream)])
    at_once = whole(stream)
    if at_once is not None:  # what a stream that broke nothing gave, it gives in any pieces
        assert same(requests, at_once)


@FUZZ
@given(stream=streams(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_a_valid_stream_gives_the_same_requests_in_any_pieces(
    stream: bytes, cuts: list[int]
) -> None:
    at_once = whole(stream)
    # Random arguments can still break framing: a map key cbor2 cannot hash, a bad tag.
    pieces, error = in_pieces(stream, [c for c in cuts if c <= len(stream)])
    assert (error is None) == (at_once is not None)
    if at_once is not None:
        assert len(at_once) >= 1
        assert same(pieces, at_once)
        one_by_one, error = in_pieces(stream, list(range(1, len(stream))))
        assert error is None and same(one_by_one, at_once)
