"""Users (scrypt password hashes), sessions and their tokens (stored as SHA-256 hashes only).

A login opens a session: a short-lived access token (sent with every call) and a longer-lived refresh token
(exchanged, once, for the next pair). Logout ends the whole session; a password change ends every other one."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors.sql import tables as t
from connectors.sql.base import (
    ConflictError,
    NotFoundError,
    Paged,
    keyset_page,
    new_id,
)
from schemas.api import (
    UserOut,
)


def hash_password(password: str) -> str:
    """scrypt (n=2**14, r=8, p=1), salted; ~50 ms: call it in an executor."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt$16384$8$1${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        got = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(got.hex(), digest)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class StoredUser(NamedTuple):
    user: UserOut
    password_hash: str


class UserRepository:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def create(self, username: str, password_hash: str, role: str) -> UserOut:
        row = {"id": new_id(), "username": username, "password_hash": password_hash, "role": role,
               "created_at": time.time()}
        async with self.engine.begin() as conn:
            if (await conn.execute(select(t.users.c.id).where(t.users.c.username == username))).first():
                raise ConflictError(f"user {username!r} exists")
            await conn.execute(insert(t.users).values(**row))
        return _user(row)

    async def by_username(self, username: str) -> StoredUser | None:
        """The user and its password hash, or None."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(t.users).where(t.users.c.username == username))).first()
        return None if row is None else StoredUser(_user(row._mapping), row.password_hash)

    async def list_all(self) -> list[UserOut]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(t.users).order_by(t.users.c.created_at))
        return [_user(r._mapping) for r in rows]

    async def list_page(self, limit: int, cursor: str | None = None) -> Paged[UserOut]:
        c = t.users.c
        rows, nxt = await keyset_page(self.engine, select(t.users), c.created_at, c.id, limit, cursor)
        return Paged([_user(r) for r in rows], nxt)

    async def delete(self, user_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.api_tokens).where(t.api_tokens.c.user_id == user_id))
            if (await conn.execute(delete(t.users).where(t.users.c.id == user_id))).rowcount == 0:
                raise NotFoundError(user_id)

    async def set_password(self, user_id: str, password_hash: str, keep_token: str | None = None) -> None:
        """Replace a user's password hash and end its sessions (all but the one ``keep_token`` belongs to)."""
        async with self.engine.begin() as conn:
            if (await conn.execute(update(t.users).where(t.users.c.id == user_id)
                                   .values(password_hash=password_hash))).rowcount == 0:
                raise NotFoundError(user_id)
            revoke = delete(t.api_tokens).where(t.api_tokens.c.user_id == user_id)
            kept = await _session_of(conn, keep_token) if keep_token is not None else None
            if kept is not None:
                revoke = revoke.where(t.api_tokens.c.session_id != kept)
            await conn.execute(revoke)

    async def count_admins(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.users)
                                           .where(t.users.c.role == "admin"))).scalar_one())

    async def open_session(self, user_id: str, lifetimes: Lifetimes) -> Session:
        """A new session for ``user_id``: an access token and a refresh token (expired rows are purged)."""
        now = time.time()
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.api_tokens).where(t.api_tokens.c.expires_at < now))
            return await _issue(conn, user_id, new_id(), lifetimes, now)

    async def refresh_session(self, refresh_token: str, lifetimes: Lifetimes) -> tuple[Session, UserOut] | None:
        """Exchange a live refresh token (once) for a new access and refresh token of the same session; None
        for an unknown, expired or access token. A refresh token presented a second time ends its session
        (it was copied: whoever holds the newer one loses it too)."""
        now, digest = time.time(), token_hash(refresh_token)
        c = t.api_tokens.c
        async with self.engine.begin() as conn:
            row = (await conn.execute(select(t.api_tokens).where(c.token_hash == digest))).first()
            if row is None or row.expires_at <= now or row.kind == "access":
                return None
            if row.kind == "used":
                await conn.execute(delete(t.api_tokens).where(c.session_id == row.session_id))
                return None
            used = await conn.execute(update(t.api_tokens).where(c.token_hash == digest, c.kind == "refresh")
                                      .values(kind="used"))
            if used.rowcount == 0:  # exchanged concurrently
                return None
            user = (await conn.execute(select(t.users).where(t.users.c.id == row.user_id))).first()
            if user is None:
                return None
            return await _issue(conn, row.user_id, row.session_id, lifetimes, now), _user(user._mapping)

    async def end_session(self, token: str) -> None:
        """Revoke every token of the session ``token`` (access or refresh) belongs to."""
        async with self.engine.begin() as conn:
            session = await _session_of(conn, token)
            if session is not None:
                await conn.execute(delete(t.api_tokens).where(t.api_tokens.c.session_id == session))

    async def user_for_token(self, token: str) -> TokenOwner | None:
        """The owner of a live (unexpired, unrevoked) access token, and when the token expires."""
        c = t.api_tokens.c
        query = (select(t.users, c.expires_at, c.session_id).join(t.api_tokens, c.user_id == t.users.c.id)
                 .where(c.token_hash == token_hash(token), c.kind == "access", c.expires_at > time.time()))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else TokenOwner(_user(row._mapping), row.expires_at, row.session_id)


class Lifetimes(NamedTuple):
    access_s: float
    refresh_s: float


class Session(NamedTuple):
    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float


class TokenOwner(NamedTuple):
    user: UserOut
    expires_at: float
    session_id: str


async def _issue(conn: AsyncConnection, user_id: str, session_id: str, lifetimes: Lifetimes, now: float) -> Session:
    access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    pair = Session(access, now + lifetimes.access_s, refresh, now + lifetimes.refresh_s)
    await conn.execute(insert(t.api_tokens), [
        {"token_hash": token_hash(access), "user_id": user_id, "created_at": now, "kind": "access",
         "session_id": session_id, "expires_at": pair.access_expires_at},
        {"token_hash": token_hash(refresh), "user_id": user_id, "created_at": now, "kind": "refresh",
         "session_id": session_id, "expires_at": pair.refresh_expires_at}])
    return pair


async def _session_of(conn: AsyncConnection, token: str) -> str | None:
    found = (await conn.execute(select(t.api_tokens.c.session_id)
                                .where(t.api_tokens.c.token_hash == token_hash(token)))).first()
    return None if found is None else str(found.session_id)


async def shared_secret(engine: AsyncEngine, name: str) -> str:
    """The server-side secret ``name``: generated at its first use and kept in the SQL store, so every API
    replica on one database signs and checks with the same key."""
    query = select(t.api_secrets.c.value).where(t.api_secrets.c.name == name)
    async with engine.connect() as conn:
        found = (await conn.execute(query)).first()
    if found is None:
        try:
            async with engine.begin() as conn:
                await conn.execute(insert(t.api_secrets).values(name=name, value=secrets.token_urlsafe(32),
                                                                created_at=time.time()))
        except IntegrityError:
            pass  # created concurrently by another replica: read theirs
        async with engine.connect() as conn:
            found = (await conn.execute(query)).first()
    assert found is not None
    return str(found.value)


def _user(row: Any) -> UserOut:
    return UserOut(id=row["id"], username=row["username"], role=row["role"], created_at=row["created_at"])
