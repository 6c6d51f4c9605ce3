"""The composition root: start roles in this process, supervised, with one shutdown path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from typing import Any

from pipeline import metrics
from pipeline.kafka import AsyncProducer, provision_topics
from pipeline.roles import ROLES, RoleSpec
from pipeline.settings import Settings
from pipeline.stage import StageRunner
from schemas.topics import CORE_TOPICS

log = logging.getLogger(__name__)


class RoleFailed(RuntimeError):
    """A role stopped with an error (the process exits non-zero so a supervisor restarts it)."""


async def run_role(spec: RoleSpec, settings: Settings, producer: AsyncProducer, stop: asyncio.Event) -> None:
    target = spec.load()
    if spec.kind == "agent":
        await StageRunner(target(settings), settings, producer).run(stop)
    elif spec.kind == "decoder":
        await target(settings, producer).run(stop)
    else:
        await target(settings, stop)


async def supervise(spec: RoleSpec, settings: Settings, producer: AsyncProducer, stop: asyncio.Event,
                    restart: bool) -> None:
    """Run a role; with ``restart`` a crash restarts it after a capped back-off, else it propagates."""
    backoff = 1.0
    while not stop.is_set():
        try:
            await run_role(spec, settings, producer, stop)
            return
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not restart:
                raise RoleFailed(f"role {spec.name} failed: {exc}") from exc
            log.exception("role %s crashed; restarting in %.0f s", spec.name, backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30)


async def run_together(stop: asyncio.Event, *jobs: Callable[[asyncio.Event], Coroutine[Any, Any, None]]) -> None:
    """Run jobs that share one stop (e.g. a consuming stage and its sender): when ``stop`` is set or any job
    ends, every job is stopped; the first failure is re-raised."""
    inner = asyncio.Event()
    relay = asyncio.create_task(_relay(stop, inner))
    tasks = [asyncio.create_task(job(inner)) for job in jobs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        inner.set()
        relay.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def _relay(outer: asyncio.Event, inner: asyncio.Event) -> None:
    await outer.wait()
    inner.set()


@contextlib.asynccontextmanager
async def shutdown_on_signals() -> AsyncIterator[asyncio.Event]:
    """An event set by SIGINT/SIGTERM: roles drain their current batch and exit."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        yield stop
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)


async def run_roles(settings: Settings, names: Iterable[str], stop: asyncio.Event, restart: bool = False) -> None:
    """Provision topics, then run the named roles until ``stop``; one producer serves them all."""
    await asyncio.get_running_loop().run_in_executor(None, provision_topics, settings, CORE_TOPICS)
    producer = AsyncProducer(settings, client_id="facestream-" + "-".join(names))
    lag = asyncio.create_task(metrics.watch_loop_lag(stop))
    tasks = [asyncio.create_task(supervise(ROLES[n], settings, producer, stop, restart), name=n) for n in names]
    try:
        done, _ = await asyncio.wait([*tasks, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in tasks and task.exception() is not None:
                stop.set()
                raise task.exception()  # type: ignore[misc]
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        lag.cancel()
        await producer.close()
