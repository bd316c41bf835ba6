"""``--workers 2 --coherence streams`` in front of moto: one stream reader for the process
group (worker 1), whose changes reach the other worker through the change channel.

A write made straight at moto is served new through fresh connections to both workers once
the reader has applied it and the other worker has applied the change it published, and
again after worker 1 (the reader) is killed and started again by the supervisor; each
wait is for a counter (``/metrics``, summed over the workers), bounded, never a fixed sleep.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from daxproxy.service.embedded import MotoServer
from tests.integration.harness import PK_SK_TABLE, ProxyProcess
from tests.integration.harness import dynamodb_client as client
from tests.integration.test_workers import (
    ATTEMPTS,
    WORKERS,
    call,
    on_each_worker,
    scrape,
    start_workers,
    wait_for,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="SO_REUSEPORT, signals")


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    moto = MotoServer()
    moto.launch()
    try:
        moto.wait_ready_sync()
        yield moto
    finally:
        moto.stop()


def figure(proxy: ProxyProcess, name: str, *labels: tuple[str, str]) -> float:
    return scrape(proxy).get((name, tuple(sorted(labels))), 0.0)


def item(v: str) -> dict[str, Any]:
    return {"pk": {"S": "1"}, "sk": {"N": "1"}, "v": {"S": v}}


def hits_on_each_worker(proxy: ProxyProcess, payload: dict[str, Any], value: str) -> None:
    """Fresh connections until each worker has served the item as a hit."""
    hit: set[int] = set()
    for _ in range(ATTEMPTS):
        answer = call(proxy, "GetItem", payload)
        assert answer.status == 200, answer.body
        assert answer.json().get("Item") == item(value)
        if answer.headers["x-daxproxy-cache"] == "hit":
            hit.add(answer.worker)
        if hit == WORKERS:
            return
    raise AssertionError(f"{ATTEMPTS} connections: hits only on workers {sorted(hit)}")


def streamed_table(moto: MotoServer) -> tuple[Any, str, dict[str, Any]]:
    """A fresh table with a KEYS_ONLY stream holding item "old": a client straight to moto,
    the table's name and the GetItem payload of its item."""
    table = f"workers-streams-{uuid.uuid4().hex[:8]}"
    spec = {"StreamSpecification": {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}}
    direct = client(moto.url)
    direct.create_table(TableName=table, **PK_SK_TABLE, **spec)
    direct.put_item(TableName=table, Item=item("old"))
    return direct, table, {"TableName": table, "Key": {"pk": {"S": "1"}, "sk": {"N": "1"}}}


def served_new_after_a_straight_write(
    proxy: ProxyProcess, direct: Any, table: str, payload: dict[str, Any]
) -> None:
    """Item "new" written straight at moto: the reader applies its record, the other worker
    the change, and then every worker serves the new item."""
    records = figure(proxy, "daxproxy_stream_records_applied_total")
    changed = figure(proxy, "daxproxy_changes_applied_total", ("kind", "changed"))
    direct.put_item(TableName=table, Item=item("new"))
    wait_for(
        lambda: figure(proxy, "daxproxy_stream_records_applied_total") > records,
        "the reader applied the record",
    )
    wait_for(
        lambda: figure(proxy, "daxproxy_changes_applied_total", ("kind", "changed")) > changed,
        "the other worker applied the change",
    )
    for answer in on_each_worker(proxy, "GetItem", payload):
        assert answer.json().get("Item") == item("new"), answer.worker


def test_one_reader_and_a_write_straight_at_moto_is_served_new_by_both_workers(
    moto: MotoServer,
) -> None:
    proxy = start_workers("--upstream", moto.url, "--coherence", "streams")
    try:
        direct, table, payload = streamed_table(moto)
        on_each_worker(proxy, "GetItem", payload)  # both learn the table
        wait_for(
            lambda: ("daxproxy_stream_seconds_behind", (("table", table),)) in scrape(proxy),
            "the table followed and read to its end",
        )
        hits_on_each_worker(proxy, payload, "old")  # cached after the drop-at-start
        served_new_after_a_straight_write(proxy, direct, table, payload)
        # One reader: the table is followed once over both workers, and one worker says so.
        assert figure(proxy, "daxproxy_stream_tables_followed") == 1
        log = proxy.log()
        assert log.count("coherence streams: following the stream of each table cached") == 1
        assert "Traceback" not in log
    finally:
        assert proxy.stop() == 0, proxy.log()


def test_after_the_reader_is_killed_the_new_one_follows_what_both_workers_cache(
    moto: MotoServer,
) -> None:
    proxy = start_workers("--upstream", moto.url, "--coherence", "streams")
    try:
        direct, table, payload = streamed_table(moto)
        on_each_worker(proxy, "GetItem", payload)
        wait_for(lambda: "following the stream" in proxy.log(), "worker 1 follows")
        pid = int(re.findall(r"worker 1 \(pid (\d+)\) listening", proxy.log())[-1])
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: re.search(r"worker 1 \(pid \d+\) serving again", proxy.log()),
            "worker 1 was not started again",
        )
        on_each_worker(proxy, "GetItem", payload)  # both learn the table again
        wait_for(
            lambda: (
                ("daxproxy_stream_seconds_behind", (("table", table),)) in scrape(proxy)
                and figure(proxy, "daxproxy_stream_tables_followed") == 1
            ),
            "the new reader follows the table, read to its end",
        )
        hits_on_each_worker(proxy, payload, "old")
        served_new_after_a_straight_write(proxy, direct, table, payload)
    finally:
        assert proxy.stop() == 0, proxy.log()
