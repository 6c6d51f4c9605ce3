"""``facestream up`` (everything in one process) and ``facestream run ROLE`` (one role), both through
``ops.root.run_roles``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from ops.broker import EmbeddedBroker
from ops.root import run_roles
from pipeline.roles import ROLES
from pipeline.runtime import RoleFailed, shutdown_on_signals
from pipeline.settings import Settings

log = logging.getLogger(__name__)


@contextlib.asynccontextmanager
async def broker_for(settings: Settings) -> AsyncIterator[Settings]:
    """The configured broker, or the embedded one started for the duration (settings updated in place)."""
    if settings.bootstrap_servers:
        yield settings
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    address = broker_address_file(settings)
    async with EmbeddedBroker(log_file=settings.data_dir / "broker.log",
                              pid_file=settings.data_dir / "broker.pid") as broker:
        address.write_text(broker.bootstrap_servers + "\n")  # `facestream ops status` finds it here
        try:
            yield settings.model_copy(update={"bootstrap_servers": broker.bootstrap_servers})
        finally:
            address.unlink(missing_ok=True)


def broker_address_file(settings: Settings) -> Path:
    return settings.data_dir / "broker.address"


def running_embedded_broker(settings: Settings) -> str | None:
    """The address of the embedded broker a `facestream up` on this data dir is running, if any."""
    address = broker_address_file(settings)
    return address.read_text().strip() if address.exists() else None


async def insecure_bind(settings: Settings) -> str | None:
    """Why the API must not start as configured (beyond loopback with a default admin password), or None."""
    from connectors.api.auth import InsecureBindError, check_bind_policy, is_loopback
    from connectors.sql.engine import open_sql
    from connectors.sql.users import UserRepository

    if is_loopback(settings.api.host):
        return None
    try:
        await check_bind_policy(settings, None)  # the configured password, without opening any store
    except InsecureBindError as exc:
        return str(exc)
    if settings.api.admin_password is not None:
        return None
    engine = await open_sql(settings)
    try:
        await check_bind_policy(settings, UserRepository(engine))
    except InsecureBindError as exc:
        return str(exc)
    finally:
        await engine.dispose()
    return None


async def run_up(settings: Settings) -> int:
    roles = list(ROLES)
    if (refusal := await insecure_bind(settings)) is not None:
        log.error("%s", refusal)
        return 2
    async with shutdown_on_signals() as stop, broker_for(settings) as live:
        log.info("facestream up: broker %s, data in %s, roles: %s", live.bootstrap_servers,
                 live.data_dir.resolve(), ", ".join(roles))
        log.info("query API on http://%s:%d/v1", live.api.host, live.api.port)
        try:
            await run_roles(live, roles, stop, restart=True)
        except RoleFailed as exc:  # only a FatalRoleError gets here under `up`: restarts cure the rest
            log.error("%s", exc)
            return 1
    return 0


async def run_single(settings: Settings, role: str) -> int:
    if not settings.bootstrap_servers:
        log.error("`facestream run %s` needs --bootstrap-servers (or FACESTREAM_BOOTSTRAP_SERVERS); "
                  "`facestream up` starts an embedded broker", role)
        return 2
    if role == "api" and (refusal := await insecure_bind(settings)) is not None:
        log.error("%s", refusal)
        return 2
    if settings.metrics.port:
        from prometheus_client import start_http_server
        start_http_server(settings.metrics.port)
    async with shutdown_on_signals() as stop:
        try:
            await run_roles(settings, [role], stop, restart=False)
        except RoleFailed as exc:
            log.error("%s", exc)
            return 1
    return 0
