"""LexDecimal: DAX's order-preserving encoding of a number sort key (range key of type N).

A port of the DAX clients' ``LexDecimal`` (Apache-2.0; the Python client's
``amazondax/LexDecimal.py``), with integer arithmetic for the digits. ``encode`` gives the
exact bytes the clients give for the same :class:`~decimal.Decimal` (trailing zeros
included: ``100`` and ``1E+2`` encode differently, as they do in the clients), and
``decode`` gives back the Decimal the clients decode, digits and exponent alike.

Format: a header byte ``0xc0 + exponent`` for positive numbers (``0x3f - exponent`` for
negative ones; ``0x80`` is zero), or a 5-byte header with a 32-bit exponent when the
exponent falls outside -62..61; then the significand in base 1000, each digit as 10 bits
holding ``digit + 12`` (``1011 - digit`` when negative), then a terminator digit
(0, 1 or 2, i.e. how many decimal digits the last group really holds less one; mirrored
for negatives), padded with zero bits to a whole byte. The exponent is the number of
digits before the decimal point: ``precision + exponent`` of the Decimal.

``decode`` raises :class:`ValueError` on bytes no client would write (a truncated
significand, a missing terminator, a digit out of range): the caller treats that as a
malformed key.
"""

from __future__ import annotations

import struct
from decimal import Decimal

_ZERO = 0x80
_SHORT = 0x3E  # exponents in -0x3e .. 0x3d fit in the header byte


def encode(value: Decimal) -> bytes:
    """The LexDecimal bytes of ``value`` (finite)."""
    if not value.is_finite():
        raise ValueError(f"LexDecimal encodes finite numbers only, not {value}")
    if value == 0:
        return bytes((_ZERO,))
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    negative = bool(sign)
    out = _header(negative, len(digits) + exp)
    unscaled = int("".join(map(str, digits)))
    remainder = len(digits) % 3  # pad the significand to whole base-1000 digits
    terminator = (2, 0, 1)[remainder]
    unscaled *= (1, 100, 10)[remainder]
    groups = []
    while unscaled:
        unscaled, group = divmod(unscaled, 1000)
        groups.append(group)
    groups.reverse()
    if negative:
        tenbits = [1011 - group for group in groups] + [1023 - terminator]
    else:
        tenbits = [group + 12 for group in groups] + [terminator]
    accum = bits = 0
    for digit in tenbits:
        accum = (accum << 10) | digit
        bits += 10
        while bits >= 8:
            bits -= 8
            out.append((accum >> bits) & 0xFF)
    if bits:
        out.append((accum << (8 - bits)) & 0xFF)
    return bytes(out)


def _header(negative: bool, exponent: int) -> bytearray:
    if -_SHORT <= exponent < _SHORT:
        return bytearray(((0x3F - exponent) if negative else (exponent + 0xC0),))
    if negative:
        first, flip = (0x7E if exponent < 0 else 0x01), 0x7FFFFFFF
    else:
        first, flip = (0x81 if exponent < 0 else 0xFE), 0x80000000
    return bytearray((first,)) + struct.pack(">I", (exponent & 0xFFFFFFFF) ^ flip)


def decode(data: bytes) -> Decimal:
    """The number ``data`` (the whole byte string) encodes."""
    if not data:
        raise ValueError("empty LexDecimal")
    if data[0] in (0x7F, 0x80):
        return Decimal(0)
    negative, exponent, offset = _read_header(data)
    digits = ""
    accum = bits = 0
    while True:
        if offset >= len(data):
            raise ValueError("LexDecimal ends before its terminator")
        accum = (accum << 8) | data[offset]
        offset += 1
        bits += 8
        if bits < 10:
            continue
        bits -= 10
        digit = (accum >> bits) & 0x3FF
        accum &= (1 << bits) - 1
        code = 1023 - digit if negative else digit
        if code <= 2:
            if not digits:
                raise ValueError("LexDecimal has no significand")
            digits = digits[: len(digits) - 2 + code]  # the last group holds code + 1 digits
            break
        group = 1011 - digit if negative else digit - 12
        if not 0 <= group <= 999:
            raise ValueError(f"LexDecimal digit out of range: {digit}")
        digits += f"{group:03d}"
    return Decimal((int(negative), tuple(int(d) for d in digits), exponent - len(digits)))


def _read_header(data: bytes) -> tuple[bool, int, int]:
    """Whether the number is negative, its exponent, and where its significand starts."""
    header = data[0]
    if header in (0x01, 0x7E):
        exponent = _int32(data) ^ 0x7FFFFFFF
        if header == 0x7E:
            exponent = (exponent & 0x7FFFFFFF) - (exponent & 0x80000000)
        return True, exponent, 5
    if header in (0x81, 0xFE):
        exponent = _int32(data) ^ 0x80000000
        if header == 0x81:
            exponent = (exponent & 0x7FFFFFFF) - (exponent & 0x80000000)
        return False, exponent, 5
    if header >= 0x82:
        return False, header - 0xC0, 1
    return True, 0x3F - header, 1


def _int32(data: bytes) -> int:
    if len(data) < 5:
        raise ValueError("LexDecimal header is truncated")
    value: int = struct.unpack_from(">I", data, 1)[0]
    return value
