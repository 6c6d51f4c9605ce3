"""Detector failover replays exactly (issue 16, point 3): real models on the real clip, driven through the
stage's commit protocol (outputs out, then ``hold_commits``, then commit; a new owner resumes from the committed
offset; a rebalance calls ``partitions_changed`` on the owners it touches).

Ownership of the clip's partition moves ten times by a kill (the owner dies, a fresh process takes its place)
and, between kills, by a join (a second detector takes the partition over while the first lives on with the
trackers it had, and gets it back at the next kill: the failover the issue saw). Every face posted, by any
owner, must be one of the undisturbed run's (same ``camera:session:track:seq`` id), and all of them must come.
A second test kills a detector while two tracks overlap (one posted, one open): the case the old commit hold
(first frame of the oldest open track) replayed under a new track id.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from agents.decoder import FrameSource
from agents.detector import DetectorAgent
from connectors.media import LocalMediaStore
from models.faces import FaceModels
from pipeline.settings import Settings
from pipeline.stage import Incoming, Output
from schemas.messages import Face, Frame, StreamEnd
from schemas.topics import FRAMES

pytestmark = pytest.mark.integration

CLIP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "faces" / "short_hamilton_clip.mp4"
CAMERA = "video:failover"
BATCH = 2


@pytest.fixture(scope="module")
def records() -> list[Incoming]:
    if not CLIP.is_file():
        pytest.skip(f"shared test media absent: {CLIP}")
    source = FrameSource(str(CLIP), Settings().decoder)
    base = time.time()
    out: list[Incoming] = []
    try:
        while (decoded := source.read()) is not None:
            frame = Frame(camera_id=CAMERA, frame_no=decoded.index, timestamp=base + decoded.position_s,
                          offset_s=decoded.position_s, width=decoded.width, height=decoded.height,
                          jpeg=decoded.jpeg, video_id="failover")
            out.append(Incoming(FRAMES, CAMERA, frame, 0, len(out), 0))
    finally:
        source.close()
    out.append(Incoming(FRAMES, CAMERA, StreamEnd(camera_id=CAMERA, video_id="failover", frames_total=len(out)),
                        0, len(out), 0))
    return out


class Cluster:
    """Detector 'processes' sharing one partition, and its committed offset."""

    def __init__(self, settings: Settings, models: FaceModels, media: LocalMediaStore) -> None:
        self.settings, self.models, self.media = settings, models, media
        self.topic = f"{settings.kafka.topic_prefix}{FRAMES.name}"
        self.committed = 0
        self.position = 0  # where the owner's consumer fetches next
        self.posted: list[str] = []

    def fresh(self) -> DetectorAgent:
        return DetectorAgent(settings=self.settings, models=self.models, media=self.media)

    def moved(self, *agents: DetectorAgent) -> None:
        """A rebalance: each live member's listener is told, and the partition's next owner fetches from the
        committed offset."""
        for agent in agents:
            agent.partitions_changed({(self.topic, 0)})
        self.position = self.committed

    async def run(self, agent: DetectorAgent, records: list[Incoming], batches: int) -> None:
        """The owner ``agent`` consumes up to ``batches`` batches, committing after each as the stage does."""
        for _ in range(batches):
            batch = records[self.position:self.position + BATCH]
            if not batch:
                self.committed = len(records)
                return
            outputs: list[Output] = await agent.handle(batch)
            self.posted += [o.message.face_id for o in outputs if isinstance(o.message, Face)]
            self.position = batch[-1].offset + 1
            self.committed = agent.hold_commits({(self.topic, 0): self.position})[(self.topic, 0)]


def test_ten_failovers_post_exactly_the_undisturbed_faces(records: list[Incoming], face_models: FaceModels,
                                                         tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    media = LocalMediaStore(tmp_path / "media")

    async def scenario() -> tuple[list[str], list[str], int]:
        reference = Cluster(settings, face_models, media)
        await reference.run(reference.fresh(), records, len(records))
        cluster = Cluster(settings, face_models, media)
        owner, other = cluster.fresh(), cluster.fresh()
        kills = 0
        while cluster.position < len(records):
            await cluster.run(owner, records, 1)
            if kills == 10:
                continue  # the last owner finishes the clip undisturbed
            # a join: the other detector takes the partition over; the first keeps its trackers
            cluster.moved(owner, other)
            owner, other = other, owner
            await cluster.run(owner, records, 1)
            # a kill: the owner dies mid-batch-stream; a fresh process replaces it and the survivor, which
            # owned the partition before, gets it back
            kills += 1
            owner, other = other, cluster.fresh()
            cluster.moved(owner, other)
        return reference.posted, cluster.posted, kills

    expected, posted, kills = asyncio.run(scenario())
    assert kills == 10, f"the clip ended after {kills} kills: use smaller batches"
    assert len(expected) == len(set(expected)) and expected
    assert set(posted) - set(expected) == set(), "a failover posted a face under a new id"
    assert set(posted) == set(expected), "a failover lost a face"


@pytest.fixture(scope="module")
def staggered(records: list[Incoming], face_models: FaceModels) -> list[Incoming]:
    """The audience shot re-timed to 2 frames a second with two faces staggered: A is seen in frames 0-5
    only, B from frame 3 on (each is hidden under a grey box elsewhere, as are the other faces). A's track
    ends and is posted while B's is open: a replay from B's first frame would meet A again and give it a new
    track id."""
    shot = [r.message for r in records if isinstance(r.message, Frame) and r.message.frame_no >= 214]
    image = cv2.imdecode(np.frombuffer(shot[0].jpeg, np.uint8), cv2.IMREAD_COLOR)
    faces = sorted(face_models.detect([image])[0], key=lambda d: -(d.bbox[2] - d.bbox[0]))
    assert len(faces) >= 2, "the audience shot shows several faces"
    out: list[Incoming] = []
    for i, frame in enumerate(shot):
        picture = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR)
        for k, face in enumerate(faces):  # A = the largest face, B = the next; the others always hidden
            if not ((k == 0 and i <= 5) or (k == 1 and i >= 3)):
                x1, y1, x2, y2 = (int(v) for v in face.bbox)
                cv2.rectangle(picture, (x1 - 12, y1 - 12), (x2 + 12, y2 + 12), (128, 128, 128), -1)
        jpeg = cv2.imencode(".jpg", picture)[1].tobytes()
        retimed = frame.model_copy(update={"frame_no": i, "timestamp": frame.timestamp + i * 0.5,
                                           "offset_s": i * 0.5, "jpeg": jpeg, "camera_id": CAMERA + "-s"})
        out.append(Incoming(FRAMES, CAMERA + "-s", retimed, 0, i, 0))
    out.append(Incoming(FRAMES, CAMERA + "-s", StreamEnd(camera_id=CAMERA + "-s", video_id="failover",
                                                         frames_total=len(out)), 0, len(out), 0))
    return out


def test_a_kill_while_tracks_overlap_replays_exactly(staggered: list[Incoming], face_models: FaceModels,
                                                     tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    media = LocalMediaStore(tmp_path / "media")

    async def scenario() -> tuple[list[str], list[list[str]]]:
        reference = Cluster(settings, face_models, media)
        await reference.run(reference.fresh(), staggered, len(staggered))
        runs = []
        for kill_after in range(2, len(staggered) // 2 + 1):  # a kill after every batch in turn
            cluster = Cluster(settings, face_models, media)
            await cluster.run(cluster.fresh(), staggered, kill_after)
            cluster.moved()
            await cluster.run(cluster.fresh(), staggered, len(staggered))
            runs.append(cluster.posted)
        return reference.posted, runs

    expected, runs = asyncio.run(scenario())
    starts = {int(face_id.rsplit(":", 2)[1]) // 1000 for face_id in expected}
    assert starts == {0, 3}, expected  # A's track from frame 0, B's from frame 3
    for posted in runs:
        assert set(posted) == set(expected), (posted, expected)
