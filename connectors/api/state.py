"""What the API's handlers share: stores, every repository (built once, here), face models and the publisher."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.api.errors import ApiError
from connectors.api.faces import FaceService
from connectors.api.media_urls import MediaUrlSigner
from connectors.api.throttle import LoginThrottle
from connectors.camera_health import CameraHealthTable
from connectors.media import MediaStore
from connectors.sql.counters import CounterRepository
from connectors.sql.dossiers import DossierRepository
from connectors.sql.entities import CameraGroupRepository, CameraRepository, WatchListRepository
from connectors.sql.episodes import EpisodeRepository
from connectors.sql.events import EventRepository
from connectors.sql.telegram import TelegramRepository
from connectors.sql.users import UserRepository
from connectors.sql.videos import VideoRepository
from connectors.sql.webhooks import WebhookRepository
from connectors.vectors import VectorStore
from pipeline.settings import Settings
from schemas.base import Message
from schemas.topics import TopicSpec

log = logging.getLogger(__name__)
PUBLISH_TIMEOUT_S = 15.0


class Publisher:
    """Produces API changes to Kafka and waits for the broker's acknowledgement (503 when it does not come)."""

    def __init__(self, producer: Any | None) -> None:
        self.producer = producer  # pipeline.kafka.AsyncProducer, or None when no broker is configured

    async def publish(self, spec: TopicSpec, key: str, message: Message) -> None:
        if self.producer is None:
            raise ApiError(503, "no Kafka broker configured: the change is stored but not published")
        try:
            await asyncio.wait_for(self.producer.send(spec, key, message), PUBLISH_TIMEOUT_S)
        except Exception as exc:
            log.warning("publishing to %s failed: %s", spec.name, exc)
            raise ApiError(503, f"the broker did not acknowledge the change ({spec.name}): {exc}") from exc


@dataclass
class ApiState:
    settings: Settings
    engine: AsyncEngine
    vectors: VectorStore
    media: MediaStore
    faces: FaceService
    publisher: Publisher
    users: UserRepository = field(init=False)
    groups: CameraGroupRepository = field(init=False)
    cameras: CameraRepository = field(init=False)
    watch_lists: WatchListRepository = field(init=False)
    dossiers: DossierRepository = field(init=False)
    events: EventRepository = field(init=False)
    videos: VideoRepository = field(init=False)
    episodes: EpisodeRepository = field(init=False)
    counters: CounterRepository = field(init=False)
    webhooks: WebhookRepository = field(init=False)
    telegram_rules: TelegramRepository = field(init=False)
    camera_health: CameraHealthTable = field(default_factory=CameraHealthTable)
    started_at: float = field(default_factory=time.time)
    background: set[asyncio.Task[Any]] = field(default_factory=set)
    media_urls: MediaUrlSigner = field(init=False)
    login_throttle: LoginThrottle = field(init=False)
    dummy_hash: str = ""  # a password hash of nobody: unknown users cost a login as much as known ones
    session_watchers: set[asyncio.Event] = field(default_factory=set)  # open websockets: set on any revocation

    def __post_init__(self) -> None:
        api = self.settings.api
        self.media_urls = MediaUrlSigner(api.media_url_ttl_s)
        self.login_throttle = LoginThrottle(api.login_window_s, api.login_max_failures_user,
                                            api.login_max_failures_address)
        url = self.media_urls.url
        self.users = UserRepository(self.engine)
        self.groups = CameraGroupRepository(self.engine)
        self.cameras = CameraRepository(self.engine)
        self.watch_lists = WatchListRepository(self.engine)
        self.dossiers = DossierRepository(self.engine, url)
        self.events = EventRepository(self.engine, url)
        self.videos = VideoRepository(self.engine)
        self.episodes = EpisodeRepository(self.engine)
        self.counters = CounterRepository(self.engine)
        self.webhooks = WebhookRepository(self.engine)
        self.telegram_rules = TelegramRepository(self.engine)


    def sessions_revoked(self) -> None:
        """Wake every open websocket of this process to re-check its token now."""
        for watcher in self.session_watchers:
            watcher.set()


STATE: web.AppKey[ApiState] = web.AppKey("facestream_state", ApiState)


def state(request: web.Request) -> ApiState:
    return request.app[STATE]
