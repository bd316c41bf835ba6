"""A holding relay to put between the proxy and moto: races on demand, without sleeps.

Each request is forwarded to moto at once and moto's answer is read; when a rule the test
installed matches the request (by ``X-Amz-Target`` operation and, optionally, a predicate on
its JSON body), the answer is then held back until the test releases that one request, so
answers can go back in any order. A rule may instead hold the *request* before it is
forwarded (``stage="request"``): a write the proxy gave up on can then land upstream when
the test says so.

The test thread drives it with plain calls::

    rule = relay.hold("GetItem", times=1)          # only the first GetItem
    future = pool.submit(proxy.get_item, ...)      # the proxy misses and fills
    held = rule.wait()                             # moto has answered; the answer is held
    proxy.update_item(...)                         # a write overlaps the fill
    held.release()                                 # the fill's answer goes back now
    future.result()

Every wait has a timeout and fails loudly (:class:`AssertionError`) when it runs out. The
relay runs an aiohttp server and client on its own event loop in a thread; :meth:`stop`
releases what is held, closes the server, cancels what is left and closes the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import aiohttp
from aiohttp import web

from daxproxy.service.embedded import free_port
from tests.integration.counting import (
    DROPPED_ANSWER_HEADERS,
    internal_error,
    run_to_the_end,
    serve_posts,
    upstream_headers,
)
from tests.integration.harness import CountedStack

Stage = Literal["answer", "request"]
WAIT = 15.0  # seconds: long enough for a loaded machine, short enough to fail a stuck test


class Held:
    """One request a rule caught: its body, then (once moto answered) moto's answer."""

    def __init__(self, relay: HoldingRelay, rule: Rule, operation: str, body: Any) -> None:
        self.operation = operation
        self.body = body  # the request's JSON body (None if it was not JSON)
        self.rule = rule
        self.status: int | None = None  # moto's status, once it answered
        self.answer: Any = None  # moto's JSON answer, once it answered
        self._relay = relay
        self._released = asyncio.Event()  # set on the relay's loop only
        self.upstream_answered = threading.Event()  # moto answered this request
        self.released = threading.Event()

    def release(self) -> None:
        """Let this one request go on (forwarded, or its answer sent back)."""
        if not self.released.is_set():
            self.released.set()
            self._relay._call(self._released.set)

    def wait_upstream(self, timeout: float = WAIT) -> Held:
        """Until moto has answered this request (after a release, for a held request)."""
        if not self.upstream_answered.wait(timeout):
            raise AssertionError(f"moto did not answer the held {self.operation} in {timeout} s")
        return self

    def __repr__(self) -> str:
        return f"<Held {self.operation} {self.body!r} -> {self.status}>"


class Rule:
    """Holds the requests of one operation that ``when`` accepts, the first ``times`` of them
    (every one if ``times`` is None), at ``stage``."""

    def __init__(
        self,
        relay: HoldingRelay,
        operation: str,
        *,
        when: Callable[[Any], bool] | None,
        times: int | None,
        stage: Stage,
        fail: bool = False,
    ) -> None:
        self.operation = operation
        self.when = when
        self.times = times
        self.stage = stage
        # Answer a 500 instead of moto's answer; with stage="request", without forwarding.
        self.fail = fail
        self.caught: list[Held] = []  # in the order they reached their hold point
        self._relay = relay
        self._matched = 0

    def _takes(self, operation: str, body: Any) -> bool:
        """Called under the relay's lock."""
        if operation != self.operation or (self.times is not None and self._matched >= self.times):
            return False
        if self.when is not None:
            try:
                if not self.when(body):
                    return False
            except (KeyError, TypeError, IndexError):
                return False
        self._matched += 1
        return True

    def wait(self, count: int = 1, timeout: float = WAIT) -> Held:
        """The ``count``-th request this rule holds, once it is held: for ``stage="answer"``,
        moto has answered it; for ``stage="request"``, it has arrived and is not forwarded."""
        with self._relay._changed:
            if not self._relay._changed.wait_for(lambda: len(self.caught) >= count, timeout):
                raise AssertionError(
                    f"no {count}th {self.operation} reached its hold in {timeout} s "
                    f"(held so far: {self.caught})"
                )
            return self.caught[count - 1]

    def release_all(self) -> None:
        with self._relay._changed:
            caught = list(self.caught)
        for held in caught:
            held.release()

    def remove(self) -> None:
        """No more holds by this rule; what it holds stays held until released."""
        with self._relay._changed:
            if self in self._relay._rules:
                self._relay._rules.remove(self)


class HoldingRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/") + "/"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.counts: Counter[str] = Counter()  # requests received, by operation
        self._changed = threading.Condition()  # guards counts, rules and every rule's caught
        self._rules: list[Rule] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._held: list[Held] = []
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="holding-relay", daemon=True)

    # The test's side -----------------------------------------------------------------

    def start(self) -> HoldingRelay:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the relay did not start: {self._failure!r}")
        return self

    def hold(
        self,
        operation: str,
        *,
        when: Callable[[Any], bool] | None = None,
        times: int | None = 1,
        stage: Stage = "answer",
    ) -> Rule:
        """Install a rule; rules are tried in the order installed, the first that takes a
        request holds it."""
        rule = Rule(self, operation, when=when, times=times, stage=stage)
        with self._changed:
            self._rules.append(rule)
        return rule

    def fail(
        self,
        operation: str,
        *,
        applied: bool,
        when: Callable[[Any], bool] | None = None,
        times: int | None = 1,
    ) -> Rule:
        """Answer the matching requests with a 500 InternalServerError, after forwarding them
        to moto (``applied``: the write happened) or without; nothing is held."""
        stage: Stage = "answer" if applied else "request"
        rule = Rule(self, operation, when=when, times=times, stage=stage, fail=True)
        with self._changed:
            self._rules.append(rule)
        return rule

    def count(self, operation: str) -> int:
        with self._changed:
            return self.counts[operation]

    def wait_count(self, operation: str, count: int, timeout: float = WAIT) -> None:
        """Until the relay has received ``count`` requests of ``operation`` in all."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.counts[operation] >= count, timeout):
                raise AssertionError(
                    f"the relay saw {self.counts[operation]} {operation}, not {count}, "
                    f"in {timeout} s"
                )

    def reset(self) -> None:
        """Remove every rule, release everything held, zero the counts."""
        with self._changed:
            self._rules.clear()
            held = list(self._held)
            self._held.clear()
            self.counts.clear()
        for h in held:
            h.release()

    def stop(self) -> None:
        self.reset()
        if self._stop is not None:
            self._call(self._stop.set)
        self._thread.join(15)
        if self._thread.is_alive():
            raise RuntimeError("the relay's thread did not end")

    def _call(self, callback: Callable[[], Any]) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed between the check and the call
                self._loop.call_soon_threadsafe(callback)

    # The relay's loop ----------------------------------------------------------------

    def _run(self) -> None:
        try:
            run_to_the_end(self._loop, self._serve())
        except BaseException as error:  # reported by start()
            self._failure = error

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        await serve_posts(self.port, self._relay, self._ready, self._stop, connections=64)

    def _catch(self, operation: str, raw: bytes) -> tuple[Held | None, Stage]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._changed:
            self.counts[operation] += 1
            self._changed.notify_all()
            for rule in self._rules:
                if rule._takes(operation, body):
                    held = Held(self, rule, operation, body)
                    self._held.append(held)
                    return held, rule.stage
        return None, "answer"

    def _reached(self, held: Held) -> None:
        with self._changed:
            held.rule.caught.append(held)
            self._changed.notify_all()

    async def _relay(self, session: aiohttp.ClientSession, request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        raw = await request.read()
        held, stage = self._catch(operation, raw)
        failing = held is not None and held.rule.fail
        if held is not None and stage == "request":
            self._reached(held)
            if failing:
                return internal_error()
            await held._released.wait()
        headers = upstream_headers(request)
        # Shielded: a write must land upstream even if the proxy has hung up meanwhile.
        status, payload, out = await asyncio.shield(self._forward(session, raw, headers))
        if held is not None:
            held.status = status
            try:
                held.answer = json.loads(payload)
            except ValueError:
                held.answer = None
            held.upstream_answered.set()
            if stage == "answer":
                self._reached(held)
                if failing:
                    return internal_error()
                await held._released.wait()
        return web.Response(status=status, body=payload, headers=out)

    async def _forward(
        self, session: aiohttp.ClientSession, raw: bytes, headers: dict[str, str]
    ) -> tuple[int, bytes, dict[str, str]]:
        async with session.post(self.upstream, data=raw, headers=headers) as answer:
            payload = await answer.read()
            out = {
                k: v for k, v in answer.headers.items() if k.lower() not in DROPPED_ANSWER_HEADERS
            }
            return answer.status, payload, out


class RelayedStack(CountedStack):
    """moto; the holding relay in front of it; the proxies a subclass's :meth:`setup` starts
    in front of the relay (after ``super().setup()``); and a pool of ``workers`` threads for
    the calls the relay holds. :meth:`stop` lets what is held go before it waits for the
    pool, so no held call keeps a thread, and stops the relay after the proxies."""

    workers = 8

    def setup(self) -> None:
        self.relay = HoldingRelay(self.moto.url).start()
        self.pool = ThreadPoolExecutor(self.workers)

    def stop(self) -> None:
        relay = getattr(self, "relay", None)
        if relay is not None:
            relay.reset()
        pool = getattr(self, "pool", None)
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        super().stop()
        if relay is not None:
            relay.stop()


def key_is(name: str, value: dict[str, Any]) -> Callable[[Any], bool]:
    """A ``when`` predicate: the request's ``Key`` (or ``Item``) has this attribute value."""

    def matches(body: Any) -> bool:
        found = body.get("Key") or body.get("Item") or {}
        return bool(found.get(name) == value)

    return matches
