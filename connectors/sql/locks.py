"""Named exclusive locks held by a process, shared by every process on the same store: who owns what.

Used where work must have one owner at a time across instances of a role: one webhook's deliveries (so they
go out once and in order), the Telegram sender, and the single-active roles (``episodes``, ``counters``),
whose extra instances wait as hot standbys.

- PostgreSQL: session advisory locks (``pg_try_advisory_lock``) on one dedicated connection. The server drops
  them when the holder's connection ends, so a killed process frees its locks at once; a lost connection
  loses every lock, which :meth:`NamedLocks.alive` reports so the holder stops its work.
- SQLite (the one-machine default): ``flock`` on files in a ``locks`` folder beside the database file; the
  kernel frees them when the process dies. ``flock`` locks belong to an open file, so two holders in one
  process exclude each other too.

Locks are not re-entrant: acquiring a name this object already holds returns True without a second lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)


def lock_key(name: str) -> int:
    """The signed 64-bit advisory lock key of ``name`` (stable across processes and versions)."""
    return int.from_bytes(hashlib.sha256(b"facestream:" + name.encode()).digest()[:8], "big", signed=True)


class NamedLocks:
    """Exclusive locks by name on the store behind ``engine`` (see the module docstring)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"
        database = engine.url.database or ""
        self.lock_dir = (Path(database).resolve().parent if database and database != ":memory:"
                         else Path(tempfile.gettempdir()) / "facestream") / "locks"
        self._conn: AsyncConnection | None = None
        self._files: dict[str, int] = {}
        self._held: set[str] = set()
        self._mutex = asyncio.Lock()

    @property
    def held(self) -> frozenset[str]:
        return frozenset(self._held)

    async def try_acquire(self, name: str) -> bool:
        """Take ``name`` if nobody holds it; True if this object holds it now."""
        async with self._mutex:
            if name in self._held:
                return True
            got = await self._pg_try(name) if self.postgres else await asyncio.to_thread(self._file_try, name)
            if got:
                self._held.add(name)
            return got

    async def release(self, name: str) -> None:
        async with self._mutex:
            if name not in self._held:
                return
            self._held.discard(name)
            if self.postgres:
                if self._conn is not None:
                    with contextlib.suppress(Exception):  # a dead connection has released it already
                        await self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key(name)})
                        await self._conn.commit()
            else:
                fd = self._files.pop(name, None)
                if fd is not None:
                    os.close(fd)  # closing the file releases its flock

    async def alive(self) -> bool:
        """Whether the locks held are still held (PostgreSQL: the lock connection still answers). When it
        does not, every lock is forgotten: the caller must stop the work they guarded."""
        if not self.postgres or self._conn is None:
            return True
        async with self._mutex:
            try:
                await self._conn.execute(text("SELECT 1"))
                await self._conn.commit()
                return True
            except Exception:  # noqa: BLE001 - any failure means the session, and its locks, are gone
                log.warning("lost the lock connection; giving up %d locks", len(self._held))
                self._held.clear()
                conn, self._conn = self._conn, None
                with contextlib.suppress(Exception):
                    await conn.close()
                return False

    async def close(self) -> None:
        for name in list(self._held):
            await self.release(name)
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await conn.close()

    async def _pg_try(self, name: str) -> bool:
        if self._conn is None:
            self._conn = await self.engine.connect()
        row = await self._conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": lock_key(name)})
        got = bool(row.scalar_one())
        await self._conn.commit()
        return got

    def _file_try(self, name: str) -> bool:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_dir / (hashlib.sha1(name.encode()).hexdigest()[:20] + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{name} pid {os.getpid()}\n".encode())
        self._files[name] = fd
        return True


@contextlib.asynccontextmanager
async def hold_or_wait(locks: NamedLocks, name: str, stop: asyncio.Event, what: str,
                       poll_s: float = 2.0) -> AsyncIterator[bool]:
    """Hold ``name`` for the block, waiting as a standby (one clear log line) while another process holds
    it. Yields True once held, False if ``stop`` came first."""
    if not await locks.try_acquire(name):
        log.warning("%s: another instance is active (it holds the lock %r); this one waits as a standby and "
                    "takes over when that one stops", what, name)
        while not await locks.try_acquire(name):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
            if stop.is_set():
                yield False
                return
        log.warning("%s: this instance is now the active one", what)
    else:
        log.info("%s: active (holds the lock %r)", what, name)
    try:
        yield True
    finally:
        await locks.release(name)


@contextlib.asynccontextmanager
async def single_active(engine: AsyncEngine, role: str, stop: asyncio.Event,
                        poll_s: float = 2.0) -> AsyncIterator[bool]:
    """For a role that must run as one active instance: hold its lock (or wait as a standby) for the block."""
    locks = NamedLocks(engine)
    try:
        async with hold_or_wait(locks, f"role:{role}", stop, role, poll_s) as active:
            yield active
    finally:
        await locks.close()
