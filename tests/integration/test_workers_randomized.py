"""Randomized and stateful, across two workers: no read older than the last acknowledged
write plus the lag.

Hypothesis runs random sequences of PutItem, UpdateItem and DeleteItem (each acknowledged
before the next step) and GetItem and BatchGetItem, over three keys, against one real
``--workers 2`` proxy in front of its embedded moto (``--record-ttl-millis 0``: nothing
expires, so expiry cannot hide staleness). Every request goes on a fresh connection, so
the kernel sends it to either worker at random. After each write, the step waits until the
other worker has applied the change (``daxproxy_changes_applied_total``): the lag, waited
for rather than guessed. Every read must then return exactly the last write's item (or
none after a delete), whichever worker answers it, from its cache or from upstream.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from tests.integration.harness import ProxyProcess
from tests.integration.test_workers import applied, call, new_table, start_workers, wait_applied

pytestmark = pytest.mark.slow

KEYS = ("a", "b", "c")


@pytest.fixture(scope="module")
def proxy() -> Iterator[ProxyProcess]:
    proxy = start_workers("--record-ttl-millis", "0")
    try:
        yield proxy
    finally:
        assert proxy.stop() == 0, proxy.log()
        os.unlink(proxy.log_path)


def test_no_worker_serves_a_read_older_than_the_last_acknowledged_write(
    proxy: ProxyProcess,
) -> None:
    class Workers(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.table = new_table(proxy)
            self.items: dict[str, dict[str, Any] | None] = dict.fromkeys(KEYS)
            self.workers: set[int] = set()

        def _wrote(self, operation: str, payload: dict[str, Any]) -> None:
            before = applied(proxy, "write")
            answer = call(proxy, operation, {"TableName": self.table, **payload})
            assert answer.status == 200, answer.body
            wait_applied(proxy, "write", before + 1)

        @rule(key=st.sampled_from(KEYS))
        def put(self, key: str) -> None:
            item = {"pk": {"S": key}, "v": {"S": uuid.uuid4().hex}}
            self._wrote("PutItem", {"Item": item})
            self.items[key] = item

        @rule(key=st.sampled_from(KEYS))
        def update(self, key: str) -> None:
            value = uuid.uuid4().hex
            self._wrote(
                "UpdateItem",
                {
                    "Key": {"pk": {"S": key}},
                    "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {"S": value}},
                },
            )
            self.items[key] = {"pk": {"S": key}, "v": {"S": value}}

        @rule(key=st.sampled_from(KEYS))
        def delete(self, key: str) -> None:
            self._wrote("DeleteItem", {"Key": {"pk": {"S": key}}})
            self.items[key] = None

        @rule(key=st.sampled_from(KEYS), times=st.integers(1, 4))
        def read(self, key: str, times: int) -> None:
            for _ in range(times):
                answer = call(
                    proxy, "GetItem", {"TableName": self.table, "Key": {"pk": {"S": key}}}
                )
                assert answer.status == 200, answer.body
                self.workers.add(answer.worker)
                assert answer.json().get("Item") == self.items[key], (answer.worker, key)

        @rule()
        def batch_read(self) -> None:
            keys = [{"pk": {"S": k}} for k in KEYS]
            answer = call(proxy, "BatchGetItem", {"RequestItems": {self.table: {"Keys": keys}}})
            assert answer.status == 200, answer.body
            self.workers.add(answer.worker)
            found = {i["pk"]["S"]: i for i in answer.json()["Responses"][self.table]}
            assert found == {k: v for k, v in self.items.items() if v is not None}, answer.worker

    run_state_machine_as_test(
        Workers,
        settings=settings(
            max_examples=8,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
