"""A circuit breaker in front of the upstream: fail fast while it gives no answers.

:class:`Breaker` is an :class:`~daxproxy.service.upstream.Upstream` that wraps another.
*Closed*, it forwards everything and counts consecutive failures; a failure is a request
that got no answer (the wrapped upstream raised: a timeout, a refused or broken
connection). Any answer, a 5xx included, ends the run: the upstream is alive and answering
quickly, so requests do not pile up (and one poison request that an upstream answers with a
500 must not cut every client off). After ``failures`` consecutive failures it *opens*:
every request fails at once with a 503 ``ServiceUnavailable``, which was certainly not sent,
so SDKs retry it safely. After ``cooldown`` seconds the next request is let through as the
one *probe* (half-open; the others still fail fast): an answer closes the breaker, no answer
opens it for another cool-down. Only outcomes of requests admitted in the current state
count, so late failures of requests sent before it opened do not extend the cool-down.

Cache hits never reach the upstream, so they are served throughout. :meth:`Breaker.ping`
(readiness) always asks the real upstream and leaves the state alone: ``/readyz`` tells
the truth, and only client traffic decides when to close. The clock is injected.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Protocol

from daxproxy.core.errors import DynamoDBError, ServiceUnavailable
from daxproxy.core.wire import Headers, Target
from daxproxy.service.upstream import Upstream, UpstreamResponse

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class BreakerObserver(Protocol):
    def breaker_changed(self, is_open: bool) -> None:
        """The breaker opened (True) or closed (False); told False once when it is made."""
        ...

    def breaker_rejected(self, target: Target) -> None:
        """A request failed fast: the breaker was open."""
        ...


class Breaker:
    def __init__(
        self,
        upstream: Upstream,
        *,
        failures: int,
        cooldown: float,
        clock: Clock = time.monotonic,
        observer: BreakerObserver | None = None,
    ) -> None:
        if failures < 1:
            raise ValueError("a breaker needs at least one failure to open")
        self.upstream = upstream
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._observer = observer
        self._state = State.CLOSED
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        # Bumped on every change of state: an outcome counts only in the state that admitted
        # its request.
        self._generation = 0
        self._probing = False  # half-open: the probe is in flight
        if observer is not None:
            observer.breaker_changed(False)

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() - self._opened_at >= self._cooldown:
            return State.HALF_OPEN  # the next request will be the probe
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether requests (all, or all but the probe) fail fast."""
        return self._state is not State.CLOSED

    async def send(
        self, target: Target, body: bytes, headers: Headers, *, retry_safe: bool
    ) -> UpstreamResponse:
        generation = self._admit(target)
        try:
            answer = await self.upstream.send(target, body, headers, retry_safe=retry_safe)
        except DynamoDBError:
            self._failed(generation)
            raise
        except BaseException:  # cancelled: no verdict; a probe's slot goes to the next one
            if generation == self._generation:
                self._probing = False
            raise
        self._answered(generation)
        return answer

    async def ping(self) -> bool:
        return await self.upstream.ping()

    async def close(self) -> None:
        await self.upstream.close()

    def _admit(self, target: Target) -> int:
        """The generation the request is admitted in; raise when it must fail fast."""
        if self._state is State.OPEN and self._clock() - self._opened_at >= self._cooldown:
            self._change(State.HALF_OPEN)
        if self._state is State.HALF_OPEN and not self._probing:
            self._probing = True
            return self._generation
        if self._state is not State.CLOSED:
            if self._observer is not None:
                self._observer.breaker_rejected(target)
            raise ServiceUnavailable(
                "The upstream DynamoDB endpoint is failing and the proxy's circuit breaker "
                "is open; the request was not sent"
            )
        return self._generation

    def _failed(self, generation: int) -> None:
        if generation != self._generation:
            return
        if self._state is State.HALF_OPEN:
            self._open()
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._open()

    def _answered(self, generation: int) -> None:
        if generation != self._generation:
            return
        if self._state is State.HALF_OPEN:
            self._change(State.CLOSED)
            log.info("upstream answers again; circuit breaker closed")
            if self._observer is not None:
                self._observer.breaker_changed(False)
        self._failures = 0

    def _open(self) -> None:
        was_closed = self._state is State.CLOSED
        self._change(State.OPEN)
        self._opened_at = self._clock()
        if was_closed:
            log.warning(
                "upstream gave no answer %d times in a row; circuit breaker open, misses "
                "fail fast for %g s at a time",
                self._threshold,
                self._cooldown,
            )
            if self._observer is not None:
                self._observer.breaker_changed(True)

    def _change(self, state: State) -> None:
        self._state = state
        self._generation += 1
        self._probing = False
        self._failures = 0
