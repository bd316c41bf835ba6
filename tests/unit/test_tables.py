"""The table registry: how long it trusts a description, what it remembers, whom it tells."""

from __future__ import annotations

from typing import Any

import orjson

from daxproxy.service.tables import MAX_AGE, SUSPECT_AFTER, TableRegistry
from tests.fakes import FakeTable, HeldDynamoDB


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def registry(fake: HeldDynamoDB, **options: Any) -> tuple[TableRegistry, Clock, list[str]]:
    clock = Clock()
    tables = TableRegistry(fake, clock=clock, **options)
    changed: list[str] = []
    tables.on_change(changed.append)
    return tables, clock, changed


async def test_a_description_is_trusted_for_its_age_then_looked_up_again() -> None:
    fake = HeldDynamoDB()
    tables, clock, changed = registry(fake)
    info = await tables.get("t")
    assert info is not None and tables.known("t") == info
    clock.now += MAX_AGE - 0.001
    assert tables.known("t") == info
    clock.now += 0.001
    assert tables.known("t") is None
    assert await tables.get("t") == info
    assert fake.count("DescribeTable") == 2
    assert changed == []  # the same table: nothing to drop


async def test_a_table_recreated_or_gone_is_dropped_by_every_listener() -> None:
    fake = HeldDynamoDB()
    tables, clock, changed = registry(fake)
    first = await tables.get("t")
    assert first is not None
    fake.tables["t"] = FakeTable("t")  # the same schema, a new incarnation
    clock.now += MAX_AGE
    second = await tables.get("t")
    assert second is not None and second.table_id != first.table_id
    assert changed == [first.arn]
    del fake.tables["t"]
    clock.now += MAX_AGE
    assert await tables.get("t") is None
    assert changed == [first.arn, first.arn]
    assert tables.arns() == set()


async def test_a_suspicion_brings_the_look_up_forward_at_most_once_a_second() -> None:
    fake = HeldDynamoDB()
    tables, clock, _ = registry(fake)
    info = await tables.get("t")
    assert info is not None
    await tables.get(info.arn)  # a second spelling of the same table
    tables.suspect("t")
    assert tables.known("t") is None and tables.known(info.arn) is None
    await tables.get("t")
    tables.suspect("t")  # within the second: does not count
    assert tables.known("t") == info
    clock.now += SUSPECT_AFTER
    tables.suspect("t")
    assert tables.known("t") is None
    tables.suspect("unknown")  # a table it does not know: nothing to do
    tables.suspect(["not", "a", "name"])


async def test_it_remembers_a_bounded_number_of_tables_and_drops_the_oldest() -> None:
    fake = HeldDynamoDB(*(FakeTable(f"t{n}") for n in range(4)))
    tables, _, changed = registry(fake, max_tables=3)
    infos = [await tables.get(f"t{n}") for n in range(4)]
    assert len(tables.arns()) == 3
    assert infos[0] is not None and changed == [infos[0].arn]
    assert tables.known("t0") is None


async def test_matching_finds_a_table_by_any_spelling_of_it_or_its_parts() -> None:
    fake = HeldDynamoDB()
    tables, _, _ = registry(fake)
    info = await tables.get("t")
    assert info is not None
    for spelling in ("t", info.arn, f"{info.arn}/index/i", f"{info.arn}/stream/2026"):
        assert tables.matching(spelling) == {info.arn}
    assert tables.matching("other") == set()


async def test_forget_tells_the_listeners_of_every_arn_it_forgot() -> None:
    fake = HeldDynamoDB()
    tables, _, changed = registry(fake)
    info = await tables.get("t")
    assert info is not None
    assert tables.forget("t") == {info.arn}
    assert changed == [info.arn] and tables.arns() == set()
    assert orjson.loads(fake.sent[0].body) == {"TableName": "t"}
