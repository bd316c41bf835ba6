"""Randomized and stateful, against moto's Streams API: two proxies with ``--coherence
streams`` in front of one moto, writes through either proxy and straight to moto, reads
through either. A check writes a barrier straight to moto (a fresh value of a key of its
own) and waits until both proxies serve it: moto's stream has one shard, read in order, so
every record before the barrier's has then been applied (the lag, waited for and bounded,
never slept). A read through either proxy must then give what moto holds.

The unit sibling (``tests/unit/test_streams_stateful.py``) adds what moto cannot do
(expired and trimmed iterators, split shards, throttling) with a fake upstream.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from tests.integration.harness import PK_SK_TABLE, CountedStack, serving
from tests.integration.harness import dynamodb_client as client

pytestmark = pytest.mark.slow

WITHIN = 20.0  # seconds the barrier may take to show through a proxy
KEYS = ("1", "2")
BARRIER = "barrier"


class Stack(CountedStack):
    def setup(self) -> None:
        self.proxies = [
            self.start_proxy("--coherence", "streams", "--record-ttl-millis", "0") for _ in range(2)
        ]
        self.checks = 0


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from serving(Stack)


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": "1"}}


class ReadsAfterTheLagAreFresh(RuleBasedStateMachine):
    def __init__(self, stack: Stack) -> None:
        super().__init__()
        self.stack = stack
        self.moto = client(stack.moto.url)
        self.clients = [client(p.url) for p in stack.proxies]
        self.table = f"streams-stateful-{uuid.uuid4().hex[:8]}"
        self.moto.create_table(
            TableName=self.table,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"},
            **PK_SK_TABLE,
        )
        self.values = itertools.count(1)
        for proxy in self.clients:  # learned, followed, its place taken
            self._read(proxy, BARRIER)
        self._barrier()

    def _read(self, proxy: Any, pk: str) -> str | None:
        item = proxy.get_item(TableName=self.table, Key=key(pk)).get("Item")
        return None if item is None else str(item["v"]["S"])

    def _write(self, to: Any, pk: str) -> None:
        value = str(next(self.values))
        to.put_item(TableName=self.table, Item={**key(pk), "v": {"S": value}})

    def _barrier(self) -> None:
        value = str(next(self.values))
        self.moto.put_item(TableName=self.table, Item={**key(BARRIER), "v": {"S": value}})
        for proxy in self.clients:
            deadline = time.monotonic() + WITHIN
            while self._read(proxy, BARRIER) != value:
                assert time.monotonic() < deadline, "the barrier was not seen in time"
                time.sleep(0.02)

    @rule(p=st.sampled_from((0, 1)), pk=st.sampled_from(KEYS))
    def write_through_a_proxy(self, p: int, pk: str) -> None:
        self._write(self.clients[p], pk)

    @rule(pk=st.sampled_from(KEYS))
    def write_straight(self, pk: str) -> None:
        self._write(self.moto, pk)

    @rule(p=st.sampled_from((0, 1)), pk=st.sampled_from(KEYS))
    def read(self, p: int, pk: str) -> None:
        self._read(self.clients[p], pk)

    @rule(p=st.sampled_from((0, 1)), pk=st.sampled_from(KEYS))
    def check(self, p: int, pk: str) -> None:
        self._barrier()
        truth = self.moto.get_item(TableName=self.table, Key=key(pk), ConsistentRead=True)
        want = truth.get("Item", {}).get("v", {}).get("S")
        got = self._read(self.clients[p], pk)
        assert got == want, f"proxy {p} gave v={got} for {pk} after the lag; moto has v={want}"
        self.stack.checks += 1

    def teardown(self) -> None:
        self.moto.delete_table(TableName=self.table)


# Few examples against moto (each costs a table and real stream reads): the search itself is
# tests/unit/test_streams_stateful.py's, over the fake Streams upstream.
SETTINGS = settings(
    max_examples=5,
    stateful_step_count=20,
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)


def test_a_read_after_the_lag_is_never_older(stack: Stack) -> None:
    run_state_machine_as_test(lambda: ReadsAfterTheLagAreFresh(stack), settings=SETTINGS)
    assert stack.checks > 0
