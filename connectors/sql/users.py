"""Users (scrypt password hashes) and API tokens (stored as SHA-256 hashes)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

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
        """Replace a user's password hash and revoke its tokens (all but ``keep_token``)."""
        async with self.engine.begin() as conn:
            if (await conn.execute(update(t.users).where(t.users.c.id == user_id)
                                   .values(password_hash=password_hash))).rowcount == 0:
                raise NotFoundError(user_id)
            revoke = delete(t.api_tokens).where(t.api_tokens.c.user_id == user_id)
            if keep_token is not None:
                revoke = revoke.where(t.api_tokens.c.token_hash != token_hash(keep_token))
            await conn.execute(revoke)

    async def count_admins(self) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(t.users)
                                           .where(t.users.c.role == "admin"))).scalar_one())

    async def issue_token(self, user_id: str) -> str:
        token = secrets.token_urlsafe(32)
        async with self.engine.begin() as conn:
            await conn.execute(insert(t.api_tokens).values(
                token_hash=token_hash(token), user_id=user_id, created_at=time.time()))
        return token

    async def revoke_token(self, token: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(t.api_tokens).where(t.api_tokens.c.token_hash == token_hash(token)))

    async def user_for_token(self, token: str) -> UserOut | None:
        query = (select(t.users).join(t.api_tokens, t.api_tokens.c.user_id == t.users.c.id)
                 .where(t.api_tokens.c.token_hash == token_hash(token)))
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _user(row._mapping)


def _user(row: Any) -> UserOut:
    return UserOut(id=row["id"], username=row["username"], role=row["role"], created_at=row["created_at"])
