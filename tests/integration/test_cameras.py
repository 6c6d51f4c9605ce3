"""Cameras are started and stopped by their config changes, without restarting anything."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ops.demo import synthesize_clip
from ops.harness import LocalPipeline
from pipeline.kafka import AsyncProducer, provision_topics
from schemas.messages import CameraChanged
from schemas.topics import CAMERAS, CORE_TOPICS
from tests.integration.conftest import settings_for

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_a_new_camera_streams_events_and_a_deleted_one_stops(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = settings_for(broker, tmp_path, detector={"best_face_mode": "realtime", "realtime_interval_s": 0.5},
                            api={"media_root": str(tmp_path)})  # the file camera lies under it (URL policy)
    clip = tmp_path / "lobby.avi"
    people = synthesize_clip(clip, seconds=2.0)

    async def scenario() -> tuple[int, int]:
        pipeline = LocalPipeline(settings)
        async with pipeline.running():
            await pipeline.enrol(people)
            await pipeline.add_camera(CameraChanged(camera_id="lobby", url=str(clip), camera_group="entrance",
                                                    labels={"zone": "entrance", "floor": "1"}))
            for _ in range(600):
                if any(e.camera_id == "lobby" and e.matched for e in pipeline.events):
                    break
                await asyncio.sleep(0.1)
            await pipeline.add_camera(CameraChanged(camera_id="lobby", deleted=True))
            await asyncio.sleep(3)  # in-flight frames drain
            after_delete = len(pipeline.events)
            await asyncio.sleep(4)  # the file camera would have looped by now
            labelled = {tuple(sorted(e.labels.items())) for e in pipeline.events if e.camera_id == "lobby"}
            return after_delete, len(pipeline.events), labelled

    after_delete, later, labelled = asyncio.run(scenario())
    assert after_delete > 0
    assert later == after_delete
    # the camera's labels travelled frames -> faces -> events
    assert labelled == {(("floor", "1"), ("zone", "entrance"))}


def test_run_decoder_exits_non_zero_with_one_line_when_it_fails(broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """`facestream run decoder` on the decoder's rails: an unexpected failure in a camera's stream (here every
    frame is larger than the operator's ``kafka.max_message_bytes``, so the producer refuses it) stops the
    process with status 1 and one line naming the role and the cause, no traceback, for a supervisor to see."""
    settings = settings_for(broker, tmp_path, kafka={"max_message_bytes": 10_000},
                            api={"media_root": str(tmp_path)})  # the file camera lies under it (URL policy)
    clip = tmp_path / "big.avi"
    synthesize_clip(clip, seconds=1.0)  # 640x360 JPEG frames of ~30 KB
    provision_topics(settings, CORE_TOPICS)

    async def add_camera() -> None:
        producer = AsyncProducer(settings)
        try:
            await producer.send(CAMERAS, "door", CameraChanged(camera_id="door", url=str(clip)))
        finally:
            await producer.close()

    asyncio.run(add_camera())
    k = settings.kafka
    env = {**os.environ, "FACESTREAM_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
           "FACESTREAM_DATA_DIR": str(tmp_path), "FACESTREAM_API_MEDIA_ROOT": str(tmp_path),
           "FACESTREAM_KAFKA_TOPIC_PREFIX": k.topic_prefix,
           "FACESTREAM_KAFKA_MAX_MESSAGE_BYTES": str(k.max_message_bytes),
           "FACESTREAM_KAFKA_SESSION_TIMEOUT_MS": str(k.session_timeout_ms),
           "FACESTREAM_KAFKA_HEARTBEAT_INTERVAL_MS": str(k.heartbeat_interval_ms)}
    proc = subprocess.Popen([sys.executable, "-m", "ops.cli", "run", "decoder"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = err.decode(errors="replace")
    assert proc.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    [line] = [ln for ln in output.splitlines() if "role decoder failed" in ln]
    assert "ERROR" in line and "KafkaException" in line and "MSG_SIZE_TOO_LARGE" in line, line
