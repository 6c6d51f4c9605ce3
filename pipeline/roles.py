"""The roles a process can run (``facestream run ROLE`` starts one, ``facestream up`` all) and their one shape.

Every role is a :class:`Role`: ``await role.run(stop)`` until ``stop`` is set; an exception means it crashed.
A stage role is a ``StageRunner`` around an agent; the webhooks and Telegram roles are a runner plus a sender;
the decoder and the API run their own loops. The composition root (``ops/root.py``) builds each one from the
process's shared resources; this module only names them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol


class Role(Protocol):
    @property
    def name(self) -> str: ...

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then release what the role opened; raise on failure."""


@dataclass(frozen=True)
class RoleInfo:
    name: str
    description: str
    # True: every instance shares the work (same consumer group; stores upsert). False: one instance is
    # active at a time; the composition root makes extra instances wait as standbys on the role's store lock.
    scalable: bool = True


ROLES: dict[str, RoleInfo] = {r.name: r for r in (
    RoleInfo("decoder", "cameras and files -> frames"),
    RoleInfo("detector", "frames -> best faces per track"),
    RoleInfo("extractor", "faces -> descriptors, attributes"),
    RoleInfo("matcher", "descriptors -> events (watch lists)"),
    RoleInfo("store", "events -> SQL, Milvus, video status"),
    # an episode spans cameras and a counter counts over cameras, but events are keyed by camera: N active
    # instances would each see some cameras and overwrite each other's episodes and counts
    RoleInfo("episodes", "events -> episodes", scalable=False),
    RoleInfo("counters", "events -> counter records", scalable=False),
    RoleInfo("webhooks", "events/episodes/counters -> webhooks"),
    RoleInfo("telegram", "events -> Telegram"),
    RoleInfo("plugins", "events -> face plug-ins (plugins.enabled; one stage and consumer group each)"),
    RoleInfo("api", "query API (several behind a load balancer)"),
)}
