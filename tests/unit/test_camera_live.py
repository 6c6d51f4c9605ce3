"""Camera changes apply live (which reopen the stream, which the detector applies to the open tracks), camera
health states, reconnect back-off with jitter, and credentials masked in URLs."""

from __future__ import annotations

import random
import time

import numpy as np
import pytest

from agents.camera_health import StreamHealth, reconnect_delay
from agents.decoder import reopens
from agents.detector import DetectorAgent
from connectors.camera_health import CameraHealthView, mask_url
from models.faces import Detection
from pipeline.settings import Settings
from pipeline.stage import Incoming
from schemas.messages import CameraChanged, CameraStatus, Frame, face_id_for, frame_key_for
from schemas.topics import FRAMES

BASE = CameraChanged(camera_id="cam", url="rtsp://h/s", camera_group="g", best_face_mode="overall")


@pytest.mark.parametrize(("change", "reopen"), [
    ({"url": "rtsp://h/other"}, True),
    ({"camera_group": "g2"}, True),
    ({"active": False}, True),
    ({"deleted": True}, True),
    ({"best_face_mode": "realtime"}, False),
    ({"min_face_size": 80}, False),
    ({"min_quality": 0.9}, False),
    ({"roi": [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0)]}, False),
    ({"name": "renamed"}, False),
])
def test_only_what_the_decoder_uses_reopens_the_stream(change: dict, reopen: bool) -> None:
    assert reopens(BASE, BASE.model_copy(update=change)) is reopen


def _face(x1: float, width: float) -> Detection:
    return Detection((x1, 10.0, x1 + width, 10.0 + width), 0.9, np.zeros((5, 2), np.float32))


def test_the_detector_applies_mode_filters_and_roi_of_a_changed_camera_to_its_running_tracker() -> None:
    agent = DetectorAgent(settings=Settings(), models=None, media=None)  # type: ignore[arg-type]
    agent.cameras.apply(BASE)
    tracker = agent._tracker("cam")
    assert tracker.policy.mode == "overall"
    agent.cameras.apply(BASE.model_copy(update={"best_face_mode": "realtime"}))
    assert agent._tracker("cam") is tracker and tracker.policy.mode == "realtime"  # same tracks, new policy

    face = _face(100, 60)
    assert agent._eligible(agent.cameras.get("cam"), face, 0.5)
    agent.cameras.apply(BASE.model_copy(update={"min_face_size": 80}))
    assert not agent._eligible(agent.cameras.get("cam"), face, 0.5)
    agent.cameras.apply(BASE.model_copy(update={"min_quality": 0.8}))
    assert not agent._eligible(agent.cameras.get("cam"), face, 0.5)
    agent.cameras.apply(BASE.model_copy(update={"roi": [(0.0, 0.0), (50.0, 0.0), (50.0, 50.0), (0.0, 50.0)]}))
    assert not agent._eligible(agent.cameras.get("cam"), face, 0.5)
    assert agent._eligible(agent.cameras.get("cam"), _face(5, 40), 0.5)


def test_a_detector_behind_keeps_the_newest_live_frames_it_can_post_in_time() -> None:
    """Faces of a batch are posted once all its frames are analysed: with 0.4 s per frame and a 1 s limit, of
    frames 0.1, 0.15 and 0.3 s old only the two newest can still be posted within 1 s of their capture; a
    detector slower than the limit still takes the newest frame; offline frames (session 0) always pass."""
    agent = DetectorAgent(settings=Settings(detector={"live_max_age_s": 1.0}), models=None, media=None)  # type: ignore[arg-type]
    now = time.time()

    def batch(*ages: float, session: int = 1) -> list[Incoming]:
        return [Incoming(FRAMES, "cam", Frame(camera_id="cam", session=session, frame_no=n, timestamp=now - age,
                                               width=1, height=1, jpeg=b""), 0, n, 0) for n, age in enumerate(ages)]

    agent.frame_cost = 0.4
    assert [i.message.frame_no for i in agent._drop_stale(batch(0.3, 0.15, 0.1))] == [1, 2]  # type: ignore[attr-defined]
    agent.frame_cost = 2.0
    assert [i.message.frame_no for i in agent._drop_stale(batch(0.3, 0.2, 0.1))] == [2]  # type: ignore[attr-defined]
    assert len(agent._drop_stale(batch(9.0, 5.0, session=0))) == 2
    assert agent.counts["cam"][2] == 1 + 2


def test_health_goes_reconnecting_then_failed_and_recovers_on_frames() -> None:
    health = StreamHealth("cam", failed_after=3)
    assert health.status == "connecting"
    health.open_failed("cannot open source 'rtsp://***:***@h'")
    assert health.status == "reconnecting" and "cannot open" in (health.last_error or "")
    health.open_failed("again")
    health.open_failed("and again")
    assert health.status == "failed" and health.failures == 3
    health.opened(1_700_000_000_000)
    health.decoded(1.0)
    health.dropped("send_backlog")
    report = health.report("decoder@x")
    assert (report.status, report.frames_decoded, report.frames_dropped, report.drops) == (
        "streaming", 1, 1, {"send_backlog": 1})
    assert health.failures == 0


def test_the_api_view_merges_decoder_and_detector_reports_and_shows_inactive_cameras_stopped() -> None:
    view = CameraHealthView()
    assert view.fields(active=True)["status"] == "connecting"
    view.apply(CameraStatus(camera_id="c", reporter="decoder", timestamp=2.0, status="streaming", fps=8.0,
                            frames_decoded=10, session=5))
    view.apply(CameraStatus(camera_id="c", reporter="decoder", timestamp=1.0, status="failed"))  # older: ignored
    view.apply(CameraStatus(camera_id="c", reporter="decoder", timestamp=2.1, status="streaming", fps=8.0,
                            frames_decoded=11, frames_dropped=1, drops={"send_backlog": 1}, session=5))
    view.apply(CameraStatus(camera_id="c", reporter="detector", timestamp=2.5, faces_posted=3, frames_dropped=4,
                            drops={"detector_behind": 4}))
    fields = view.fields(active=True)
    assert (fields["status"], fields["fps"], fields["frames_decoded"], fields["faces_posted"]) == (
        "streaming", 8.0, 11, 3)
    assert (fields["frames_dropped"], fields["drops"]) == (5, {"send_backlog": 1, "detector_behind": 4})
    assert view.fields(active=False)["status"] == "stopped"


def test_counters_carry_on_from_the_cameras_last_report_when_another_process_takes_it() -> None:
    """A decoder or detector that takes a camera (a restart, a crash, a rebalance) resumes its counters from the
    camera's last report on camera-status instead of restarting them at 0."""
    last = CameraStatus(camera_id="c", reporter="decoder", client_id="decoder@a:1", timestamp=1.0,
                        frames_decoded=100, frames_dropped=2, drops={"send_backlog": 2}, last_frame_at=0.9)
    health = StreamHealth("c", failed_after=3).resume(last)
    health.opened(5)
    health.decoded(2.0)
    report = health.report("decoder@b:2")
    assert (report.frames_decoded, report.frames_dropped, report.drops) == (101, 2, {"send_backlog": 2})
    assert StreamHealth("c", failed_after=3).resume(None).frames_decoded == 0

    detector = DetectorAgent(settings=Settings(), models=None, media=None)  # type: ignore[arg-type]
    detector.history.apply(CameraStatus(camera_id="c", reporter="detector", client_id="detector@a:1", timestamp=1.0,
                                        frames_detected=50, faces_posted=7, frames_dropped=3,
                                        drops={"detector_behind": 3}))
    detector._count("c")[1] += 1
    assert detector.counts == {"c": [50, 8, 3]}


def test_reconnect_delay_doubles_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    delays = [reconnect_delay(n, 0.5, 30.0, rng) for n in range(1, 12)]
    for n, delay in enumerate(delays, start=1):
        nominal = min(30.0, 0.5 * 2 ** (n - 1))
        assert nominal * 0.5 <= delay <= nominal
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered, not lock-step


def test_credentials_are_masked_in_urls() -> None:
    assert mask_url("rtsp://admin:s3cret@10.0.0.5:554/live") == "rtsp://***:***@10.0.0.5:554/live"
    assert mask_url("http://user@cam/mjpg") == "http://***:***@cam/mjpg"
    assert mask_url("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"
    assert mask_url("/videos/a@b.mp4") == "/videos/a@b.mp4"


def test_ids_of_live_sessions_never_collide_and_offline_ids_keep_their_form() -> None:
    assert face_id_for("video:v1", 0, 3000, 0) == "video:v1:3000:0"
    assert face_id_for("cam", 1_700_000_000_000, 0, 0) != face_id_for("cam", 1_700_000_000_001, 0, 0)
    assert frame_key_for("cam/1", 0, 7) == "frames/cam_1/7.jpg"
    assert frame_key_for("cam", 12, 7) == "frames/cam/12-7.jpg"
