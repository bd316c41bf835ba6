"""DAX's error answer: what a DynamoDB error becomes on a DAX connection.

In place of a success status (an empty array, ``0x80``) the server writes three items: a
non-empty array of int codes, the message text, and ``[request id, DynamoDB error code,
HTTP status]``. The clients raise the exception the codes name (``DaxError.ERROR_MAP`` in
the Python client: a ``botocore`` ClientError whose ``Error.Code`` is DynamoDB's), and fall
back to the DynamoDB code in the third item when the codes name nothing: for an error with
no DAX codes of its own the codes are :data:`UNMAPPED`, a path the clients' maps end on
(``[4, 37, 38, 39]`` alone would make the Python client report a dict as the code).

:func:`error_reply` takes the error's type as DynamoDB writes it (``__type``, with or
without its namespace), its message, HTTP status and request id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from daxproxy.dax import cbor

# A TransactionCanceledException's reason: DynamoDB's code, message, and the old item as a
# values payload (ReturnValuesOnConditionCheckFailure ALL_OLD) or None.
Reason = tuple[str, str | None, bytes | None]

_DATA = (4, 37, 38, 39)
CODES: dict[str, tuple[int, ...]] = {
    "ProvisionedThroughputExceededException": (*_DATA, 40),
    "ResourceNotFoundException": (*_DATA, 41),
    "ConditionalCheckFailedException": (*_DATA, 43),
    "ResourceInUseException": (*_DATA, 45),
    "ValidationException": (*_DATA, 46),
    "InternalServerError": (*_DATA, 47),
    "ItemCollectionSizeLimitExceededException": (*_DATA, 48),
    "LimitExceededException": (*_DATA, 49),
    "ThrottlingException": (*_DATA, 50),
    "TransactionCanceledException": (*_DATA, 58),
    "RequestLimitExceeded": (*_DATA, 61),
    "AccessDeniedException": (4, 37, 38, 42),
}
# defineKeySchema's answer for a table that does not exist (TableNotFoundException).
TABLE_NOT_FOUND = (4, 23, 24)
# An authorizeConnection the server refuses: the next request's answer carries these.
AUTH_REFUSED = (4, 23, 31, 33)
UNMAPPED = (*_DATA, 0)


def short_type(error_type: str) -> str:
    """``com.amazonaws.dynamodb.v20120810#X`` -> ``X``."""
    return error_type.rpartition("#")[2]


def reason(cancellation: Mapping[str, Any], item: bytes | None = None) -> Reason:
    """One of DynamoDB's CancellationReasons as DAX's triple, with ``item`` (the old item's
    values payload) if any."""
    message = cancellation.get("Message")
    return (str(cancellation.get("Code", "None")), None if message is None else str(message), item)


def error_reply(
    error_type: str,
    message: str,
    status: int,
    request_id: str,
    codes: tuple[int, ...] | None = None,
    *,
    reasons: Sequence[Reason] | None = None,
) -> bytes:
    """The bytes of DAX's error answer (``codes``: DAX's own, else from the type). A
    TransactionCanceledException's ``reasons`` follow in the third item, flat: code,
    message, old item (null when none)."""
    code = short_type(error_type)
    if codes is None:
        codes = CODES.get(code, UNMAPPED)
    detail: list[Any] = [request_id, code, status]
    if reasons is not None:
        detail.append([x for reason in reasons for x in reason])
    return cbor.dumps(list(codes)) + cbor.dumps(message) + cbor.dumps(detail)
