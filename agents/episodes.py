"""Episodes stage: events -> episodes topic (open / update / close) + SQL, state recoverable on restart.

Per batch, in order: the pure :class:`agents.episode_rules.EpisodeBuilder` takes the events (an end
marker with a video id closes that file's episodes); the changes are upserted into SQL (idempotent); the
outputs are the ``EpisodeChanged`` records (topic ``episodes``, key = episode id) and the state records of
every changed episode (changelog ``episode-state``, key = episode id). The runner produces them and waits
for the acks *before* committing the input offsets, so the changelog always holds at least the state that
the committed offsets imply.

Restart: :meth:`EpisodesAgent.start` replays ``episode-state`` from the start (last record per key wins;
closed markers drop the episode) and then consumes from the committed offsets. The events of the batch
that was in flight are redelivered; the builder ignores event ids already in its state, so the result is
the same as an undisturbed run. The embedded broker keeps topics in memory: a *broker* restart loses the
changelog, and with it the open episodes (SQL keeps what was published).

Scaling: episodes are built per camera group within one instance. Events are keyed by camera, so with
several instances an episode spans only the cameras of the partitions one instance owns; run one instance
per deployment unless cross-camera episodes do not matter (the stage is cheap: a few dot products per event).

Similarity: ``episodes.threshold`` is in confidence units, through the injected ``Similarity`` (the same
calibration as the matcher and deduplication).
"""

from __future__ import annotations

import logging
import time

from agents.episode_rules import EpisodeBuilder, EpisodeRules
from agents.ports import EpisodeStore, Similarity
from pipeline.kafka import replay_to_end
from pipeline.settings import Settings
from pipeline.stage import AgentBase, Incoming, Output
from schemas.messages import EpisodeChanged, EpisodeStateRecord, FaceEvent, StreamEnd
from schemas.topics import EPISODE_STATE, EPISODES, EVENTS

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_S = 120.0


class EpisodesAgent(AgentBase):
    name = "episodes"
    inputs = (EVENTS,)

    def __init__(self, *, settings: Settings, repo: EpisodeStore, similarity: Similarity) -> None:
        self.settings = settings
        self.repo = repo
        self.builder = EpisodeBuilder(similarity, EpisodeRules.from_settings(settings.episodes))
        self.restored = 0

    async def start(self) -> None:
        await self._replay_state()

    async def handle(self, batch: list[Incoming]) -> list[Output]:
        now = time.time()
        changes: list[EpisodeChanged] = []
        for item in batch:
            msg = item.message
            if isinstance(msg, FaceEvent):
                changes.extend(self.builder.add(msg, now))
            elif isinstance(msg, StreamEnd) and msg.video_id is not None:
                changes.extend(self.builder.end_stream(msg.video_id))
        return await self._publish(changes)

    async def tick(self, now: float) -> list[Output]:
        return await self._publish(self.builder.tick(now))

    async def _publish(self, changes: list[EpisodeChanged]) -> list[Output]:
        states = self.builder.drain_changes()
        if not changes and not states:
            return []
        await self.repo.save(changes)
        outputs = [Output(EPISODES, c.episode.episode_id, c) for c in changes]
        outputs += [Output(EPISODE_STATE, s.episode.episode_id, s) for s in states]
        return outputs

    async def _replay_state(self) -> None:
        """Rebuild the builder from the changelog (see the module docstring)."""
        now = time.time()

        def apply(record: EpisodeStateRecord) -> None:
            self.builder.restore(record, now)
            self.restored += 1

        await replay_to_end(self.settings, EPISODE_STATE, apply, REPLAY_TIMEOUT_S)
        log.info("episodes: replayed %d state records, %d episodes open", self.restored,
                 len(self.builder.open_episodes))

