"""WebhooksAgent.handle without a broker or SQL: in-memory outbox, the real calibration."""

from __future__ import annotations

from agents.webhooks import WebhookBook, WebhooksAgent
from models.faces import confidences
from pipeline.settings import Settings
from pipeline.stage import Incoming
from schemas.messages import StreamEnd
from schemas.notify import NotifyFilters, Webhook
from schemas.topics import EVENTS
from tests.unit.notify_helpers import event, incoming, near, person


class MemoryOutbox:
    """The webhook definitions and outbox, in memory."""

    def __init__(self, *webhooks: Webhook) -> None:
        self.webhooks = list(webhooks)
        self.rows: list[tuple[str, str, bytes]] = []

    async def list_all(self) -> list[Webhook]:
        return self.webhooks

    async def enqueue(self, items: list[tuple[str, str, bytes]], queue_max: int) -> int:
        known = {(w, i) for w, i, _ in self.rows}
        self.rows += [r for r in items if (r[0], r[1]) not in known]
        return 0


def agent_with(*webhooks: Webhook) -> tuple[WebhooksAgent, MemoryOutbox]:
    outbox = MemoryOutbox(*webhooks)
    agent = WebhooksAgent(settings=Settings(), repo=outbox, book=WebhookBook(outbox, 60.0),  # type: ignore[arg-type]
                          similarity=confidences)
    return agent, outbox


def hook(webhook_id: str, **fields: object) -> Webhook:
    return Webhook(webhook_id=webhook_id, url="http://127.0.0.1:1/", created_at=0.0, **fields)  # type: ignore[arg-type]


async def test_two_different_unknown_people_both_reach_the_webhook():
    """The dedup threshold (0.5, confidence units) is not compared to a raw cosine: faces at cosine 0.6 (L2
    0.89, different people by dlib's rule) are both delivered, while repeated shots of one person fold."""
    agent, outbox = agent_with(hook("w1"))
    p = person(1)
    events = [event("a", 0, p, video_id="v", quality=0.9), event("b", 1, near(p, 0.6, 1), video_id="v"),
              event("c", 2, near(p, 0.95, 2), video_id="v")]
    assert await agent.handle(incoming(events)) == []
    assert [item_id for _, item_id, _ in outbox.rows] == ["a", "b"]
    assert agent.wake.is_set()


async def test_items_go_to_every_subscribed_webhook_whose_filters_pass():
    agent, outbox = agent_with(hook("all"), hook("cam2", filters=NotifyFilters(camera_ids=["cam2"])),
                               hook("off", active=False), hook("episodes", topics=["episode_open"]))
    await agent.handle(incoming([event("a", 0, person(1)), event("b", 0, person(2), camera="cam2")]))
    assert sorted((w, i) for w, i, _ in outbox.rows) == [("all", "a"), ("all", "b"), ("cam2", "b")]


async def test_end_of_a_file_forgets_its_dedup_state():
    agent, outbox = agent_with(hook("w1"))
    p = person(1)
    await agent.handle(incoming([event("a", 0, p, video_id="v", quality=0.9)]))
    await agent.handle([Incoming(EVENTS, "cam1", StreamEnd(camera_id="cam1", video_id="v", frames_total=1), 0, 1, 0)])
    await agent.handle(incoming([event("b", 1, near(p, 0.95, 1), video_id="v")]))
    assert [i for _, i, _ in outbox.rows] == ["a", "b"]
