"""Randomized and stateful, across workers: two proxies, each with its own caches and a
ChangeLink to one ChangeHub, in front of one HeldDynamoDB. A read that starts on either
proxy after every write has been answered, and after the changes have reached every proxy
(the lag: waited for on the channel's counters, never a sleep), never returns an older
value than DynamoDB holds.

Hypothesis interleaves, on random proxies and keys:

- a read that misses and whose upstream answer is held: a fill in flight;
- writes (PutItem, UpdateItem with several ReturnValues, DeleteItem, a PartiQL UPDATE),
  answered at once or held after they have landed, or answered with a fault: a 500 after
  landing, or no answer at all (the request timed out and never landed);
- releases of held answers, in any order;
- a check: with every write answered and every change applied, a GetItem or BatchGetItem
  on either proxy gives what DynamoDB holds, and so does one more (what the first stored).

A held fill no write has overtaken yet may be shared by a later read (which would then wait
for its release), so a check on that proxy and key waits until one has. The sibling
``tests/integration/test_item_cache_races_stateful.py`` does the same for one proxy process
in front of moto.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any

import orjson
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from daxproxy.core.config import Settings
from daxproxy.service.proxy import ClientRequest, Proxy
from daxproxy.service.runtime import build_proxy
from daxproxy.workers.channel import ChangeHub, ChangeLink
from tests.fakes import FakeTable, HeldDynamoDB, Hold

PROMPTLY = 5.0
KEYS = ("1", "2")
PROXIES = (0, 1)
WRITES = (
    ("PutItem", None),
    ("UpdateItem", "NONE"),
    ("UpdateItem", "ALL_NEW"),
    ("UpdateItem", "ALL_OLD"),
    ("UpdateItem", "UPDATED_NEW"),
    ("DeleteItem", None),
    ("ExecuteStatement", None),
)


def request(operation: str, **payload: Any) -> ClientRequest:
    target = f"DynamoDB_20120810.{operation}"
    return ClientRequest((("X-Amz-Target", target),), orjson.dumps(payload), target)


def write_request(operation: str, returns: str | None, pk: str, value: str) -> ClientRequest:
    extra = {} if returns is None else {"ReturnValues": returns}
    if operation == "PutItem":
        return request(operation, TableName="t", Item={"pk": {"S": pk}, "v": {"S": value}})
    if operation == "UpdateItem":
        return request(
            operation,
            TableName="t",
            Key={"pk": {"S": pk}},
            UpdateExpression="SET v = :v",
            ExpressionAttributeValues={":v": {"S": value}},
            **extra,
        )
    if operation == "DeleteItem":
        return request(operation, TableName="t", Key={"pk": {"S": pk}})
    return request(
        operation,
        Statement='UPDATE "t" SET "v" = ? WHERE "pk" = ?',
        Parameters=[{"S": value}, {"S": pk}],
    )


async def read(p: Proxy, pk: str, batch: bool) -> dict[str, Any] | None:
    if batch:
        call = request("BatchGetItem", RequestItems={"t": {"Keys": [{"pk": {"S": pk}}]}})
    else:
        call = request("GetItem", TableName="t", Key={"pk": {"S": pk}})
    answer = await p.handle(call)
    assert answer.status == 200, answer.body
    body = orjson.loads(answer.body)
    if not batch:
        item: dict[str, Any] | None = body.get("Item")
        return item
    assert not body.get("UnprocessedKeys"), body
    found = body["Responses"].get("t", [])
    return found[0] if found else None


@dataclass
class Pending:
    hold: Hold
    task: asyncio.Task[Any]
    proxy: int
    pk: str
    write: bool
    overtaken: bool = False  # a fill's: a write to its key was answered since it started


class ReadsAfterWritesAreFreshOnEveryWorker(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = tempfile.mkdtemp(prefix="daxproxy-hub-")
        self.fake = HeldDynamoDB(FakeTable("t"))
        self.values = itertools.count(1)
        self.pending: list[Pending] = []
        self.loop.run_until_complete(self._start())

    async def _start(self) -> None:
        path = os.path.join(self.directory, "changes")
        self.hub = ChangeHub(path)
        await self.hub.start()
        self.links = [await ChangeLink.connect(path, n + 1) for n in PROXIES]
        self.proxies = [
            build_proxy(
                Settings(upstream="http://127.0.0.1:1", record_ttl_millis=0),
                self.fake,
                changes=link,
            )
            for link in self.links
        ]

    def teardown(self) -> None:
        self.loop.run_until_complete(self._stop())
        self.loop.close()
        shutil.rmtree(self.directory)

    async def _stop(self) -> None:
        for pending in self.pending:
            pending.hold.release()
        await asyncio.gather(*(pending.task for pending in self.pending))
        for link in self.links:
            await link.close()
        await self.hub.close()

    def run(self, coroutine: Any) -> Any:
        async def bounded() -> Any:
            async with asyncio.timeout(PROMPTLY):
                return await coroutine

        return self.loop.run_until_complete(bounded())

    # Rules ------------------------------------------------------------------------------

    @precondition(lambda self: len(self.pending) < 6)
    @rule(proxy=st.sampled_from(PROXIES), pk=st.sampled_from(KEYS), batch=st.booleans())
    def start_fill(self, proxy: int, pk: str, batch: bool) -> None:
        if any(p.proxy == proxy and p.pk == pk and not p.write for p in self.pending):
            return  # a second read might share the first one's fill
        hold = self.fake.hold("BatchGetItem" if batch else "GetItem")
        task = self.loop.create_task(read(self.proxies[proxy], pk, batch))

        async def reached() -> bool:
            waiting = asyncio.ensure_future(hold.wait_reached())
            await asyncio.wait({waiting, task}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            return hold.reached.is_set()

        if self.run(reached()):
            self.pending.append(Pending(hold, task, proxy, pk, write=False))
        else:  # a hit: nothing went upstream
            self.fake._holds.remove(hold)
            self.run(task)

    @precondition(lambda self: len(self.pending) < 6)
    @rule(
        proxy=st.sampled_from(PROXIES),
        pk=st.sampled_from(KEYS),
        write=st.sampled_from(WRITES),
        held=st.booleans(),
        fault=st.sampled_from([None, None, "500", "timeout"]),
    )
    def write(
        self, proxy: int, pk: str, write: tuple[str, str | None], held: bool, fault: str | None
    ) -> None:
        operation, returns = write
        call = write_request(operation, returns, pk, str(next(self.values)))
        if fault is not None:
            failing = self.fake.hold(operation, status=500, timeout=fault == "timeout")
            failing.applied = fault != "timeout"
            failing.release()
            assert self.run(self.proxies[proxy].handle(call)).status == 500
            self._answered(pk, operation)
            return
        if not held:
            assert self.run(self.proxies[proxy].handle(call)).status == 200
            self._answered(pk, operation)
            return
        hold = self.fake.hold(operation)
        task = self.loop.create_task(self.proxies[proxy].handle(call))
        self.run(hold.wait_reached())  # it has landed; its answer waits
        self.pending.append(Pending(hold, task, proxy, pk, write=True))

    @precondition(lambda self: self.pending)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        pending = data.draw(st.sampled_from(self.pending))
        self.pending.remove(pending)
        pending.hold.release()
        answer = self.run(pending.task)
        if pending.write:
            assert answer.status == 200, answer.body
            self._answered(pending.pk, pending.hold.operation)

    def _answered(self, pk: str, operation: str) -> None:
        for pending in self.pending:
            # A PartiQL write drops its table: every fill in flight is overtaken.
            if pending.pk == pk or operation == "ExecuteStatement":
                pending.overtaken = True

    @precondition(lambda self: not any(p.write for p in self.pending))
    @rule(proxy=st.sampled_from(PROXIES), pk=st.sampled_from(KEYS), batch=st.booleans())
    def check(self, proxy: int, pk: str, batch: bool) -> None:
        if any(
            p.proxy == proxy and p.pk == pk and not p.overtaken for p in self.pending
        ):  # the read could share that fill, and wait for its release
            return
        self.run(self._settled())
        truth = self.fake.item("t", pk=pk)
        assert self.run(read(self.proxies[proxy], pk, batch)) == truth
        assert self.run(read(self.proxies[proxy], pk, not batch)) == truth

    async def _settled(self) -> None:
        """Until every change either proxy published has been applied by the other."""

        def counts(p: Proxy) -> tuple[int, int]:
            assert p.metrics is not None
            return sum(p.metrics.changes_published.values()), sum(
                p.metrics.changes_applied.values()
            )

        while True:
            (sent_a, heard_a), (sent_b, heard_b) = (counts(p) for p in self.proxies)
            if heard_a == sent_b and heard_b == sent_a:
                return
            await asyncio.sleep(0.001)


def test_reads_after_answered_writes_are_fresh_on_every_worker() -> None:
    run_state_machine_as_test(
        ReadsAfterWritesAreFreshOnEveryWorker,
        settings=settings(
            max_examples=150,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
