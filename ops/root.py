"""The composition root: the one place that opens resources and builds roles.

``open_resources(settings)`` is one ``AsyncExitStack`` holding, each opened at most once per process and only
when a role asks for it: the SQL engine (migrated), the vector store, the media store, one Kafka producer,
the membership reporting on that producer, the face models, and the source I/O pool (the decoder's blocking
stream opens and reads: a thread pool of its own, so a camera that hangs never holds a thread that
inference or the API waits for; those use the loop's default executor). ``BUILDERS`` turns those into roles
(``pipeline.roles.Role``); agents get their collaborators as keyword arguments and open nothing themselves.
``run_roles`` is what ``facestream up`` (every role, crashes restarted and counted) and ``facestream run
ROLE`` (one role, a crash exits non-zero) both call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.counters import CountersAgent
from agents.decoder import DecoderAgent
from agents.detector import DetectorAgent
from agents.episodes import EpisodesAgent
from agents.extractor import ExtractorAgent
from agents.face_plugins import (
    Activate,
    FacePluginAgent,
    FacePluginError,
    FrameLiveness,
    PluginContext,
    check_enabled,
)
from agents.matcher import MatcherAgent
from agents.matching import Gallery
from agents.store_sink import StoreSink
from agents.telegram import TelegramAgent, TelegramSender
from agents.webhooks import Dispatcher, WebhookBook, WebhooksAgent
from connectors.api.app import ApiRole, build_app
from connectors.api.faces import FaceService
from connectors.api.state import ApiState, Publisher
from connectors.api_client import ApiClient
from connectors.http_session import HttpSessionClient
from connectors.media import MediaStore, open_media_store
from connectors.sql.counters import CounterRepository
from connectors.sql.engine import open_sql
from connectors.sql.entities import CameraRepository, WatchListRepository
from connectors.sql.episodes import EpisodeRepository
from connectors.sql.events import EventRepository
from connectors.sql.locks import NamedLocks, hold_or_wait, single_active
from connectors.sql.retention import purge_expired
from connectors.sql.telegram import TelegramRepository
from connectors.sql.videos import VideoRepository
from connectors.sql.webhooks import WebhookRepository
from connectors.telegram_client import TelegramClient
from connectors.url_policy import UnresolvableError, UrlPolicyError, check_url
from connectors.vectors import VectorStore, open_vectors
from connectors.webhook_client import WebhookClient
from models.faces import FaceModels, confidences
from pipeline import metrics
from pipeline.kafka import AsyncProducer, provision_topics
from pipeline.membership import Membership
from pipeline.roles import ROLES, Role
from pipeline.runtime import FatalRoleError, RoleFactory, run_supervised, run_together, supervise
from pipeline.settings import Settings
from pipeline.stage import Agent, StageRunner
from schemas.topics import CORE_TOPICS

log = logging.getLogger(__name__)


class Resources:
    """The process's shared resources, opened on first use and closed (in reverse) with the stack."""

    def __init__(self, settings: Settings, stack: contextlib.AsyncExitStack, client_id: str) -> None:
        self.settings = settings
        self.stack = stack
        self.similarity = confidences  # the one cosine -> confidence calibration
        self._client_id = client_id
        self._lock = asyncio.Lock()
        self._sql: AsyncEngine | None = None
        self._vectors: VectorStore | None = None
        self._media: MediaStore | None = None
        self._producer: AsyncProducer | None = None
        self._membership: Membership | None = None
        self._models: FaceModels | None = None
        self._source_io: ThreadPoolExecutor | None = None

    async def sql(self) -> AsyncEngine:
        async with self._lock:
            if self._sql is None:
                self._sql = await open_sql(self.settings)  # counted (metrics) where engines are created
                self.stack.push_async_callback(self._sql.dispose)
            return self._sql

    async def vectors(self) -> VectorStore:
        async with self._lock:
            if self._vectors is None:
                self._vectors = await open_vectors(self.settings)
                self.stack.push_async_callback(self._vectors.close)
                _opened("vectors")
            return self._vectors

    async def media(self) -> MediaStore:
        async with self._lock:
            if self._media is None:
                self._media = await asyncio.to_thread(open_media_store, self.settings)
                _opened("media")
            return self._media

    async def producer(self) -> AsyncProducer:
        """The process's one producer (every stage, reporter, sink and the API share it)."""
        async with self._lock:
            if self._producer is None:
                self._producer = AsyncProducer(self.settings, client_id=self._client_id)  # counted in its __init__
                self.stack.push_async_callback(self._producer.close)
            return self._producer

    async def membership(self) -> Membership:
        producer = await self.producer()
        async with self._lock:
            if self._membership is None:
                self._membership = Membership(producer)
            return self._membership

    async def face_models(self) -> FaceModels:
        async with self._lock:
            if self._models is None:
                self._models = await asyncio.to_thread(FaceModels.load, self.settings.models)
                _opened("face_models")
            return self._models

    async def source_io(self) -> ThreadPoolExecutor:
        """The pool for blocking source I/O (``decoder.source_threads``). At close it stops taking work and
        does not wait: a thread still inside an open or read ends within the decoder's timeouts."""
        async with self._lock:
            if self._source_io is None:
                pool = self._source_io = ThreadPoolExecutor(self.settings.decoder.source_threads, "source-io")
                self.stack.callback(pool.shutdown, wait=False, cancel_futures=True)
                _opened("source_io")
            return self._source_io

    async def stage(self, agent: Agent) -> StageRunner:
        return StageRunner(agent, settings=self.settings, producer=await self.producer(),
                           membership=await self.membership())


def _opened(kind: str) -> None:
    metrics.RESOURCES_OPENED.labels(kind).inc()
    log.debug("opened %s", kind)


@contextlib.asynccontextmanager
async def open_resources(settings: Settings, client_id: str = "facestream") -> AsyncIterator[Resources]:
    async with contextlib.AsyncExitStack() as stack:
        yield Resources(settings, stack, client_id)


# ---------------------------------------------------------------- roles


@dataclass
class Sink:
    """A consuming stage plus the sender that drains its outbox, stopped together (webhooks, Telegram)."""

    name: str
    runner: StageRunner
    sender: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
    client: HttpSessionClient

    async def run(self, stop: asyncio.Event) -> None:
        try:
            await run_together(stop, self.runner.run, self.sender)
        finally:
            await self.client.close()


@dataclass
class SingleActive:
    """A role that runs as one active instance (``scalable=False`` in ``pipeline.roles``): it holds the store
    lock ``role:{name}`` while it runs; an extra instance waits as a standby (one log line) and takes over when
    the active one stops. The lock is taken before the stage joins its consumer group."""

    name: str
    inner: Role
    engine: AsyncEngine

    async def run(self, stop: asyncio.Event) -> None:
        async with single_active(self.engine, self.name, stop) as active:
            if active:
                await self.inner.run(stop)


@dataclass
class Idle:
    """A role with nothing to do in this configuration (said once, then waits for stop)."""

    name: str
    reason: str

    async def run(self, stop: asyncio.Event) -> None:
        log.warning("%s: %s", self.name, self.reason)
        await stop.wait()


async def decoder(res: Resources) -> Role:
    return DecoderAgent(settings=res.settings, producer=await res.producer(), media=await res.media(),
                        membership=await res.membership(), source_io=await res.source_io())


async def detector(res: Resources) -> Role:
    return await res.stage(DetectorAgent(settings=res.settings, models=await res.face_models(),
                                         media=await res.media()))


async def extractor(res: Resources) -> Role:
    return await res.stage(ExtractorAgent(settings=res.settings, models=await res.face_models()))


async def matcher(res: Resources) -> Role:
    gallery = Gallery(res.similarity, res.settings.matcher.threshold)
    return await res.stage(MatcherAgent(settings=res.settings, gallery=gallery))


async def store(res: Resources) -> Role:
    engine, vectors, media = await res.sql(), await res.vectors(), await res.media()
    events = EventRepository(engine, media.url_path)

    async def retention() -> object:
        return await purge_expired(events, vectors, media, res.settings.store)

    return await res.stage(StoreSink(events=events, vectors=vectors, videos=VideoRepository(engine),
                                     retention=retention))


async def episodes(res: Resources) -> Role:
    engine = await res.sql()
    repo = EpisodeRepository(engine)
    stage = await res.stage(EpisodesAgent(settings=res.settings, repo=repo, similarity=res.similarity))
    return SingleActive("episodes", stage, engine)


async def counters(res: Resources) -> Role:
    engine = await res.sql()
    stage = await res.stage(CountersAgent(settings=res.settings, repo=CounterRepository(engine)))
    return SingleActive("counters", stage, engine)


async def webhooks(res: Resources) -> Role:
    s = res.settings
    repo = WebhookRepository(await res.sql())
    book, wake = WebhookBook(repo, s.webhooks.refresh_s), asyncio.Event()
    client = WebhookClient(s.webhooks.timeout_s, allow_private=s.api.url_allow_private)
    agent = WebhooksAgent(settings=s, repo=repo, book=book, similarity=res.similarity, wake=wake)
    dispatcher = Dispatcher(settings=s.webhooks, repo=repo, book=book, client=client, wake=wake)
    return Sink("webhooks", await res.stage(agent), dispatcher.run, client)


async def telegram(res: Resources) -> Role:
    s = res.settings
    if s.telegram.bot_token is None:
        return Idle("telegram", "no bot token (FACESTREAM_TELEGRAM_BOT_TOKEN); the Telegram sink is idle")
    try:
        await check_url(s.telegram.api_base_url, "telegram", s)
    except UnresolvableError as exc:  # DNS may be back soon: every connection is checked anyway
        log.warning("telegram: %s (telegram.api_base_url); starting, each call checks its address", exc)
    except UrlPolicyError as exc:
        return Idle("telegram", f"telegram.api_base_url is refused by the URL policy: {exc}; the Telegram "
                                "sink is idle")
    engine = await res.sql()
    repo, wake = TelegramRepository(engine), asyncio.Event()
    client = TelegramClient(s.telegram.api_base_url, s.telegram.bot_token, s.telegram.timeout_s,
                            allow_private=s.api.url_allow_private)
    agent = TelegramAgent(settings=s, repo=repo, watch_lists=WatchListRepository(engine),
                          cameras=CameraRepository(engine), wake=wake)
    sender = TelegramSender(settings=s.telegram, repo=repo, client=client, media=await res.media(), wake=wake)

    async def send_when_active(stop: asyncio.Event) -> None:
        """One sender among the instances (store lock ``telegram-sender``): the outbox is read, then marked,
        and the bot's rate limit is per bot; the other instances' senders wait as standbys."""
        locks = NamedLocks(engine)
        try:
            async with hold_or_wait(locks, "telegram-sender", stop, "telegram sender") as active:
                if active:
                    await sender.run(stop)
        finally:
            await locks.close()

    return Sink("telegram", await res.stage(agent), send_when_active, client)


@dataclass
class FacePlugins:
    """The ``plugins`` role: each enabled face plug-in in its own stage and consumer group
    (``agents.face_plugins``), supervised on its own: one whose activation or stage crashes is restarted
    with a back-off (counted as a restart of ``plugin.<name>``) while the others run on."""

    name: str
    res: Resources
    activates: dict[str, Activate]
    api: ApiClient

    async def run(self, stop: asyncio.Event) -> None:
        membership = await self.res.membership()
        others: dict[str, Any] = {}  # every plug-in's ctx.plugins: the plug-ins activated in this process
        try:
            await asyncio.gather(*(
                supervise(f"plugin.{name}", self._builder(name, activate, others), stop,
                          on_restart=membership.restarted)
                for name, activate in self.activates.items()))
        finally:
            await self.api.close()

    def _builder(self, name: str, activate: Activate, others: dict[str, Any]) -> RoleFactory:
        options = self.res.settings.plugins.options.get(name, {})

        liveness = FrameLiveness(self.res.face_models, self.res.media)  # opened on the first request only

        async def build() -> Role:
            ctx = PluginContext(name=name, options=options, api=self.api, plugins=others)
            return await self.res.stage(FacePluginAgent(settings=self.res.settings, activate=activate, ctx=ctx,
                                                        liveness=liveness))
        return build


def plugin_api_client(settings: Settings) -> ApiClient:
    """The face plug-ins' client of this deployment's API (``plugins.api_url``, ``plugins.api_token``)."""
    p, a = settings.plugins, settings.api
    url = p.api_url or a.public_url or f"http://{a.host}:{a.port}"
    token = p.api_token or a.admin_token
    return ApiClient(url, token.get_secret_value() if token else None, timeout_s=p.timeout_s)


async def plugins(res: Resources) -> Role:
    try:
        activates = check_enabled(res.settings)
    except FacePluginError as exc:
        raise FatalRoleError(str(exc)) from exc
    if not activates:
        return Idle("plugins", "no face plug-ins enabled (plugins.enabled); the plug-in stage is idle")
    return FacePlugins("plugins", res, activates, plugin_api_client(res.settings))


async def api_state(res: Resources) -> ApiState:
    """The API's state (stores, every repository, face models, publisher) over the process's resources.
    Without ``bootstrap_servers`` the API stores changes but cannot publish them (503 on publish)."""
    producer = await res.producer() if res.settings.bootstrap_servers else None
    if producer is None:
        log.warning("no bootstrap_servers: the API stores changes but cannot publish them")
    return ApiState(res.settings, await res.sql(), await res.vectors(), await res.media(),
                    FaceService(res.face_models), Publisher(producer))


@contextlib.asynccontextmanager
async def api_app(settings: Settings) -> AsyncIterator[web.Application]:
    """The API application on resources of its own (tests, tools): topics provisioned when a broker is set."""
    if settings.bootstrap_servers:
        await asyncio.to_thread(provision_topics, settings, CORE_TOPICS)
    async with open_resources(settings, client_id="facestream-api") as res:
        yield build_app(await api_state(res))


async def api(res: Resources) -> Role:
    return ApiRole(state=await api_state(res))


BUILDERS: dict[str, Callable[[Resources], Awaitable[Role]]] = {
    "decoder": decoder, "detector": detector, "extractor": extractor, "matcher": matcher, "store": store,
    "episodes": episodes, "counters": counters, "webhooks": webhooks, "telegram": telegram, "plugins": plugins,
    "api": api,
}
assert set(BUILDERS) == set(ROLES), "every role in pipeline.roles has a builder here"


def _factory(builder: Callable[[Resources], Awaitable[Role]], res: Resources) -> RoleFactory:
    async def build() -> Role:
        return await builder(res)
    return build


async def run_roles(settings: Settings, names: Iterable[str], stop: asyncio.Event, *, restart: bool) -> None:
    """Provision the topics, open the resources, and run the named roles until ``stop``. With ``restart`` a
    crashed role is rebuilt after a back-off (counted: ``facestream_role_restarts_total``, ``ops status``);
    without it the first crash stops every role and raises ``pipeline.runtime.RoleFailed``."""
    names = list(names)
    await asyncio.to_thread(provision_topics, settings, CORE_TOPICS)
    async with open_resources(settings, client_id="facestream-" + "-".join(names)) as res:
        await serve(res, names, stop, restart=restart)


async def serve(res: Resources, names: Iterable[str], stop: asyncio.Event, *, restart: bool) -> None:
    """Run the named roles on already opened resources (``run_roles``; the in-process harness)."""
    membership = await res.membership()
    factories = {n: _factory(BUILDERS[n], res) for n in names}
    await run_supervised(factories, stop, on_restart=membership.restarted if restart else None)
