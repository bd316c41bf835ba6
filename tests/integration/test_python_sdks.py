"""boto3 and aiobotocore through the proxy get exactly what moto gives them straight.

Each SDK runs the whole-API scenario (tests/integration/scenario.py) once through the proxy
and once against an identical moto server, and the two sets of outcomes must be equal:
results, and errors with their codes, messages and extra members.
"""

from __future__ import annotations

import uuid
from typing import Any

import boto3
from aiobotocore.session import get_session

from tests.integration import scenario
from tests.integration.conftest import Endpoints
from tests.integration.harness import REGION


def boto3_clients(url: str) -> dict[str, Any]:
    return {
        "dynamodb": boto3.client("dynamodb", endpoint_url=url, region_name=REGION),
        "streams": boto3.client("dynamodbstreams", endpoint_url=url, region_name=REGION),
    }


def test_boto3(endpoints: Endpoints) -> None:
    table = f"boto3-{uuid.uuid4().hex[:8]}"
    through_proxy = scenario.run(boto3_clients(endpoints.proxy), table)
    direct = scenario.run(boto3_clients(endpoints.direct), table)
    scenario.check_it_really_ran(through_proxy, table)
    assert through_proxy == direct


async def run_aiobotocore(url: str, table: str) -> dict[str, Any]:
    session = get_session()
    async with (
        session.create_client("dynamodb", endpoint_url=url, region_name=REGION) as dynamodb,
        session.create_client("dynamodbstreams", endpoint_url=url, region_name=REGION) as streams,
    ):
        return await scenario.run_async({"dynamodb": dynamodb, "streams": streams}, table)


async def test_aiobotocore(endpoints: Endpoints) -> None:
    table = f"aiobotocore-{uuid.uuid4().hex[:8]}"
    through_proxy = await run_aiobotocore(endpoints.proxy, table)
    direct = await run_aiobotocore(endpoints.direct, table)
    scenario.check_it_really_ran(through_proxy, table)
    assert through_proxy == direct
