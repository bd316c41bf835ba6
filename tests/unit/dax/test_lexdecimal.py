"""LexDecimal against the byte examples of the protocol study and the client's own code."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from amazondax import LexDecimal as client_lexdecimal
from amazondax.CborEncoder import DYNAMODB_CONTEXT

from daxproxy.dax import lexdecimal

# Verified against amazondax/LexDecimal.py (the protocol study, section 3).
EXAMPLES = {
    "0": "80",
    "1": "c11c0000",
    "5": "c1800000",
    "-5": "3e7ffff0",
    "3.14": "c1518020",
    "100": "c31c0020",
    "0.00001": "bc1c0000",
    "-0.5": "3f7ffff0",
}


@pytest.mark.parametrize(("text", "hex_bytes"), EXAMPLES.items())
def test_examples(text: str, hex_bytes: str) -> None:
    assert lexdecimal.encode(Decimal(text)).hex() == hex_bytes
    assert lexdecimal.decode(bytes.fromhex(hex_bytes)) == Decimal(text)


def _numbers(count: int) -> list[Decimal]:
    """Random DynamoDB numbers: up to 38 digits, exponents across DynamoDB's whole range
    (the 5-byte header beyond -62..61), both signs, trailing zeros kept."""
    rng = random.Random(16)
    out = []
    while len(out) < count:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 38)))
        text = f"{rng.choice(['', '-'])}{digits.lstrip('0') or '7'}E{rng.randint(-128, 120)}"
        try:
            out.append(DYNAMODB_CONTEXT.create_decimal(text))
        except ArithmeticError:
            continue
    return out


def test_the_same_bytes_and_numbers_as_the_client() -> None:
    for number in _numbers(5000):
        ours = lexdecimal.encode(number)
        assert ours == client_lexdecimal.encode(number), number
        assert str(lexdecimal.decode(ours)) == str(client_lexdecimal.decode_all(ours)), number


def test_trailing_zeros_encode_as_the_client_does() -> None:
    # 100 and 1E+2 are one number but two spellings; the clients keep them apart.
    assert lexdecimal.encode(Decimal("1E+2")) != lexdecimal.encode(Decimal("100"))
    assert str(lexdecimal.decode(lexdecimal.encode(Decimal("1E+2")))) == "1E+2"


def test_order_is_numeric_order() -> None:
    numbers = sorted(set(_numbers(500)))
    encoded = [lexdecimal.encode(n) for n in numbers]
    assert encoded == sorted(encoded)


@pytest.mark.parametrize(
    "hex_bytes",
    [
        "",  # nothing
        "c1",  # a header and no significand
        "c11c",  # a digit cut short, no terminator
        "fe0000",  # a long header cut short
        "c10000",  # a terminator before any digit
        "c1ffc0",  # a digit out of range (1023 - 12 is the largest)
    ],
)
def test_malformed_bytes_raise_value_error(hex_bytes: str) -> None:
    with pytest.raises(ValueError):
        lexdecimal.decode(bytes.fromhex(hex_bytes))


def test_only_finite_numbers_encode() -> None:
    with pytest.raises(ValueError):
        lexdecimal.encode(Decimal("NaN"))
