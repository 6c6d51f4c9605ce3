"""Running roles in this process: supervision (restart or fail), one shutdown path, the loop-lag watch.

What to run comes from the composition root (``ops/root.py``) as role factories; this module only runs them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

from pipeline import metrics
from pipeline.roles import Role

log = logging.getLogger(__name__)

RoleFactory = Callable[[], Awaitable[Role]]
INITIAL_BACKOFF_S = 1.0
MAX_BACKOFF_S = 30.0


class RoleFailed(RuntimeError):
    """A role stopped with an error (the process exits non-zero so a supervisor restarts it)."""


class FatalRoleError(RuntimeError):
    """A failure that no restart can cure (e.g. the API's port is taken): even under ``up`` the process stops."""


async def supervise(name: str, build: RoleFactory, stop: asyncio.Event, *,
                    on_restart: Callable[[str], int] | None = None) -> None:
    """Build and run a role until ``stop``. Without ``on_restart`` a crash raises :class:`RoleFailed`; with it,
    the crash is counted (``on_restart(name)`` returns the count), logged, and the role is rebuilt after a
    capped back-off."""
    backoff = INITIAL_BACKOFF_S
    while not stop.is_set():
        try:
            role = await build()
            await role.run(stop)
            return
        except asyncio.CancelledError:
            raise
        except FatalRoleError as exc:
            raise RoleFailed(f"role {name} cannot run: {exc}") from exc
        except Exception as exc:
            if on_restart is None:
                raise RoleFailed(f"role {name} failed: {type(exc).__name__}: {exc}") from exc
            count = on_restart(name)
            log.exception("role %s crashed (restart %d); restarting in %.0f s", name, count, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)


async def run_supervised(roles: dict[str, RoleFactory], stop: asyncio.Event, *,
                         on_restart: Callable[[str], int] | None = None) -> None:
    """Run every role until ``stop`` (or, without restarts, until one fails: then the others stop and
    :class:`RoleFailed` propagates)."""
    lag = asyncio.create_task(metrics.watch_loop_lag(stop))
    tasks = [asyncio.create_task(supervise(n, build, stop, on_restart=on_restart), name=n)
             for n, build in roles.items()]
    try:
        done, _ = await asyncio.wait([*tasks, asyncio.create_task(stop.wait())],
                                     return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in tasks and (error := task.exception()) is not None:
                raise error
        await asyncio.gather(*tasks)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        lag.cancel()


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
