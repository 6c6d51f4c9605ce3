"""The roles a process can run: ``facestream run ROLE`` starts one, ``facestream up`` starts them all.

A role is either a stage agent (bound to its consumer group by the StageRunner) or a service with its own
``run(settings, stop)`` loop. Targets are imported lazily, so a role's heavy dependencies load only where
it runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class RoleSpec:
    name: str
    target: str  # "module:function": an agent factory (settings) -> Agent, or a service run(settings, stop)
    kind: Literal["agent", "service", "decoder"]
    scalable: bool = True  # more instances share the work (same consumer group)
    description: str = ""

    def load(self) -> Any:
        module, func = self.target.split(":")
        return getattr(importlib.import_module(module), func)


ROLES: dict[str, RoleSpec] = {r.name: r for r in (
    RoleSpec("decoder", "agents.decoder:DecoderAgent", "decoder", description="cameras and files -> frames"),
    RoleSpec("detector", "agents.detector:build", "agent", description="frames -> best faces per track"),
    RoleSpec("extractor", "agents.extractor:build", "agent", description="faces -> descriptors, attributes"),
    RoleSpec("matcher", "agents.matcher:build", "agent", description="descriptors -> events (watch lists)"),
    RoleSpec("store", "agents.store_sink:build", "agent", description="events -> SQL, Milvus, video status"),
    RoleSpec("episodes", "agents.episodes:build", "agent", description="events -> episodes"),
    RoleSpec("counters", "agents.counters:build", "agent", description="events -> counter records"),
    RoleSpec("webhooks", "agents.webhooks:run", "service", description="events/episodes/counters -> webhooks"),
    RoleSpec("telegram", "agents.telegram:run", "service", description="events -> Telegram"),
    RoleSpec("api", "connectors.api.app:run_api", "service", scalable=False, description="query API"),
)}

