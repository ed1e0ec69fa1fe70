"""The subscriber card shows the account's arrears: the stage reached, since when the debt is overdue and,
once the relay is open, when it was disconnected; an account without an arrears episode shows none."""

from __future__ import annotations

from datetime import timedelta

from aiohttp.test_utils import TestClient
from sqlalchemy import insert

from store.schema.ledger import arrears
from store.uow import UnitOfWork
from tests.integration.web.helpers import Seeded, login
from web.keys import CLOCK


async def test_the_card_shows_the_arrears_stage_and_since_when(
    client: TestClient, seeded: Seeded, uow: UnitOfWork
) -> None:
    now = client.app[CLOCK]()
    async with uow.begin() as conn:
        await conn.execute(
            insert(arrears).values(
                account_id=seeded.account_ids[0],
                overdue_since=now - timedelta(days=12),
                stage="disconnect",
                stage_at=now - timedelta(days=1),
                disconnected_at=now - timedelta(days=1),
                updated_at=now,
            )
        )
    await login(client, "operator")
    owing = await (await client.get(f"/console/subscribers/{seeded.subscriber_ids[0]}")).text()
    assert 'data-testid="arrears" data-stage="disconnect"' in owing
    assert "Overdue since" in owing
    assert "Disconnected" in owing
    clear = await (await client.get(f"/console/subscribers/{seeded.subscriber_ids[1]}")).text()
    assert 'data-testid="arrears"' not in clear
