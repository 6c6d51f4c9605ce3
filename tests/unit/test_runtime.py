"""One role shape, one supervisor (pipeline/runtime.py): a crash fails `run`, `up` restarts and counts it."""

from __future__ import annotations

import asyncio

import pytest

from pipeline.roles import Role
from pipeline.runtime import FatalRoleError, RoleFailed, run_supervised


class Crashing:
    """Crashes on its first ``crashes`` runs, then works until stop."""

    name = "flaky"

    def __init__(self, runs: list[str], crashes: int) -> None:
        self.runs, self.crashes = runs, crashes
        self.working = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        self.runs.append("run")
        if len(self.runs) <= self.crashes:
            raise ValueError("boom")
        self.working.set()
        await stop.wait()


class Steady:
    name = "steady"

    def __init__(self) -> None:
        self.stopped = False

    async def run(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.stopped = True


async def test_a_crash_without_restarts_stops_every_role_and_fails() -> None:
    runs: list[str] = []
    steady = Steady()

    async def flaky() -> Role:
        return Crashing(runs, crashes=1)

    async def other() -> Role:
        return steady

    with pytest.raises(RoleFailed, match="role flaky failed: ValueError: boom"):
        await asyncio.wait_for(run_supervised({"flaky": flaky, "steady": other}, asyncio.Event()), 5)
    assert steady.stopped and runs == ["run"]


async def test_with_restarts_a_crashed_role_is_rebuilt_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.runtime.INITIAL_BACKOFF_S", 0.01)
    runs: list[str] = []
    builds: list[int] = []
    counted: list[str] = []
    shared = Crashing(runs, crashes=2)

    async def flaky() -> Role:
        builds.append(1)
        return shared

    def on_restart(name: str) -> int:
        counted.append(name)
        return len(counted)

    stop = asyncio.Event()
    task = asyncio.create_task(run_supervised({"flaky": flaky}, stop, on_restart=on_restart))
    await asyncio.wait_for(shared.working.wait(), 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert counted == ["flaky", "flaky"] and len(builds) == 3


class Unrecoverable:
    name = "api"

    def __init__(self, runs: list[str]) -> None:
        self.runs = runs

    async def run(self, stop: asyncio.Event) -> None:
        self.runs.append("run")
        raise FatalRoleError("the query API cannot listen on 127.0.0.1:8080: Address already in use")


async def test_a_fatal_error_stops_up_instead_of_a_restart_loop() -> None:
    runs: list[str] = []
    counted: list[str] = []

    async def api() -> Role:
        return Unrecoverable(runs)

    def count(name: str) -> int:
        counted.append(name)
        return len(counted)

    with pytest.raises(RoleFailed, match="role api cannot run: the query API cannot listen"):
        await asyncio.wait_for(run_supervised({"api": api}, asyncio.Event(), on_restart=count), 5)
    assert runs == ["run"] and counted == []
