"""Store locks (SQLite file locks, PostgreSQL advisory locks): one holder at a time, a standby takes over."""

from __future__ import annotations

import asyncio
from pathlib import Path

from connectors.sql.engine import open_sql
from connectors.sql.locks import NamedLocks, single_active
from pipeline.settings import Settings


async def test_one_holder_at_a_time_and_a_standby_takes_over(tmp_path: Path, sql_store: dict[str, str]) -> None:
    settings = Settings(data_dir=tmp_path, store=sql_store)
    first, second = await open_sql(settings), await open_sql(settings)  # two instances' engines
    try:
        a, b = NamedLocks(first), NamedLocks(second)
        assert await a.try_acquire("webhook:w1") and await a.alive()
        assert not await b.try_acquire("webhook:w1")
        assert await b.try_acquire("webhook:w2")
        await a.close()
        assert await b.try_acquire("webhook:w1")
        await b.close()

        order: list[str] = []
        stop, release_first, first_active = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def instance(engine: object, name: str, hold: asyncio.Event | None) -> None:
            async with single_active(engine, "episodes", stop, poll_s=0.1) as active:  # type: ignore[arg-type]
                order.append(f"{name} active={active}")
                first_active.set()
                if hold is not None:
                    await hold.wait()

        one = asyncio.create_task(instance(first, "one", release_first))
        await asyncio.wait_for(first_active.wait(), 10)
        two = asyncio.create_task(instance(second, "two", None))
        await asyncio.sleep(0.5)
        assert order == ["one active=True"]  # the second waits as a standby
        release_first.set()
        await asyncio.wait_for(asyncio.gather(one, two), 10)
        assert order == ["one active=True", "two active=True"]
    finally:
        await first.dispose()
        await second.dispose()
