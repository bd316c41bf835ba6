"""One DAX connection's authorization, with ``auth_file``: who its calls are made by.

A DAX client proves its key once per connection, with authorizeConnection (no reply), and
again every 150 s or when its authorization has 30 s left of a 5-minute life
(``amazondax/Tube.py``: ``reauth``). :class:`AuthorizedConnection` stands in front of
:meth:`DaxService.answer <daxproxy.service.dax_calls.DaxService.answer>` for one connection:

- an authorizeConnection is verified (:meth:`~daxproxy.core.access.Access.
  authorize_connection`); its key then authorizes the connection's calls for
  :data:`TTL_SECONDS` from when it arrived (by ``clock``), the clients' own life for it,
  which they renew at half that. One refused, or arguments that are not DAX's, leave the
  connection with no authorization, whatever came before;
- any other call, on a connection with no authorization (none yet, a refused one, or one
  older than :data:`TTL_SECONDS`), is answered with DAX's authentication refusal
  (:data:`~daxproxy.dax.errors.AUTH_REFUSED`, ``AccessDeniedException``, the reason in
  the message), which the Python client raises at once while it starts and retries on
  a new connection, re-authorized, afterwards; else it is answered, by that key.

A refused authorizeConnection is logged once, at WARNING, with the key id (when it is
shaped like one) and the reason; a call refused for want of an authorization, once per
connection at INFO. Neither ever holds the signature, the string to sign or a secret.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from daxproxy.core import wire
from daxproxy.core.access import Access
from daxproxy.core.errors import DynamoDBError
from daxproxy.dax import errors, methods
from daxproxy.dax.session import Request

log = logging.getLogger(__name__)

# How long an authorization lasts on a connection: the clients' own TTL for it (Tube's
# _auth_ttl_millis); they send a new one after half of it.
TTL_SECONDS = 300.0
NONE_YET = "Request is missing Authentication Token: no authorizeConnection on this connection"
EXPIRED = (
    f"the connection's authorizeConnection is more than {TTL_SECONDS:g} s old; "
    "DAX clients send a new one every 150 s"
)
_SHAPE = "authorizeConnection's arguments are not DAX's (text, text, bytes, text or null, ...)"
_KEY_ID = re.compile(r"[A-Za-z0-9_+=.@-]{1,128}\Z")
_LOGGED_REASON = 300  # characters of a reason (which can quote the client's text) logged

Answer = Callable[[Request, tuple[bytes, int], str], Awaitable[bytes | None]]


class AuthorizedConnection:
    """One connection's calls, answered by ``answer`` with the key its latest
    authorizeConnection proved; see the module docstring."""

    __slots__ = ("_access", "_answer", "_clock", "_key_id", "_reason", "_since", "_told")

    def __init__(self, answer: Answer, access: Access, clock: Callable[[], float]) -> None:
        self._answer = answer
        self._access = access
        self._clock = clock
        self._key_id: str | None = None
        self._since = 0.0
        self._reason = NONE_YET  # why there is no authorization, when there is none
        self._told = False  # that reason was logged (once a connection, once a refusal)

    async def answer(self, request: Request, endpoint: tuple[bytes, int]) -> bytes | None:
        if request.method is methods.AUTHORIZE_CONNECTION:
            self._authorize(request.args)
            return None
        key_id = self._current()
        if key_id is None:
            if not self._told:
                self._told = True
                log.info("DAX call refused on a connection with no authorization: %s", self._reason)
            return errors.error_reply(
                "AccessDeniedException",
                self._reason,
                400,
                wire.new_request_id(),
                errors.AUTH_REFUSED,
            )
        return await self._answer(request, endpoint, key_id)

    def _authorize(self, args: tuple[Any, ...]) -> None:
        key_id, signature, to_sign, token, _agent = args
        self._key_id = None
        try:
            if not (
                isinstance(key_id, str)
                and isinstance(signature, str)
                and isinstance(to_sign, bytes)
                and isinstance(token, str | None)
            ):
                raise DynamoDBError(_SHAPE)
            self._key_id = self._access.authorize_connection(key_id, signature, to_sign, token)
        except DynamoDBError as error:
            self._reason = f"authorizeConnection refused: {error.message}"
            self._told = True  # here, once: the calls it refuses are not logged again
            log.warning(
                "DAX authorizeConnection refused for key %s: %s",
                key_id if isinstance(key_id, str) and _KEY_ID.match(key_id) else "(malformed)",
                _printable(error.message),
            )
            return
        self._since = self._clock()
        self._told = False

    def _current(self) -> str | None:
        """The key the connection's calls are made by; None: it has no authorization."""
        if self._key_id is not None and self._clock() - self._since >= TTL_SECONDS:
            self._key_id, self._reason = None, EXPIRED
        return self._key_id


def _printable(text: str) -> str:
    """``text`` for a log line: control characters escaped, at most a few hundred kept."""
    if len(text) > _LOGGED_REASON:
        text = text[:_LOGGED_REASON] + "..."
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")
