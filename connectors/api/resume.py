"""Nothing in flight is lost on a restart: unfinished videos are re-queued or failed, at API start.

The embedded broker keeps topics in memory, so a restart of ``facestream up`` loses the ``video-jobs`` of
every video still ``queued`` or ``processing``. At start the API reads ``video-jobs`` from the beginning and,
for each unfinished video of the SQL store whose job is not there:

1. its uploaded file is still in the media store: the job is published again. The decoder re-runs the file
   from its start; frame timestamps come from the video's stored ``started_at`` (the upload time unless
   given) and every output id is deterministic (``camera:track:seq``, ``ep:<first event>``), so the stores
   upsert and the result is that of an undisturbed run;
2. the file is gone: the video is marked ``failed`` with the reason and its open episodes are closed
   (``interrupted``), as no end marker will ever come.

On a durable Kafka cluster the jobs are still in the topic, so nothing is re-queued: the decoder group's
committed offsets resume them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from connectors.api.state import ApiState
from pipeline.kafka import replay_to_end
from schemas.messages import VideoJob
from schemas.topics import VIDEO_JOBS

log = logging.getLogger(__name__)
REPLAY_TIMEOUT_S = 30.0


async def queued_job_ids(st: ApiState) -> set[str]:
    """Video ids with a job in ``video-jobs`` now (read from the start until an idle fetch)."""
    found: set[str] = set()

    def seen(job: Any) -> None:
        if isinstance(job, VideoJob):
            found.add(job.video_id)

    await replay_to_end(st.settings, VIDEO_JOBS, seen, REPLAY_TIMEOUT_S)
    return found


def _job_path(st: ApiState, key: str) -> str | None:
    """The path decoders open for a stored upload (local file, or the S3 key), or None if it is gone."""
    local = st.media.local_path(key)
    if local is not None:
        return str(local) if local.is_file() else None
    return key if st.media.exists(key) else None


async def resume_videos(st: ApiState) -> tuple[int, int]:
    """Re-queue or fail every unfinished video whose job is not in ``video-jobs``; (resumed, failed)."""
    unfinished = await st.videos.unfinished()
    if not unfinished:
        return 0, 0
    queued = await queued_job_ids(st)
    loop = asyncio.get_running_loop()
    resumed = failed = 0
    for video in unfinished:
        if video["id"] in queued:
            continue
        path = await loop.run_in_executor(None, _job_path, st, video["media_key"])
        if path is None:
            await st.videos.fail(video["id"], f"interrupted by a restart and its file is gone ({video['media_key']})")
            await st.episodes.close_video(video["id"])
            failed += 1
            continue
        await st.publisher.publish(VIDEO_JOBS, video["id"], VideoJob(
            video_id=video["id"], path=path, camera_id=video["camera_id"], camera_group=video["camera_group"],
            started_at=video["started_at"] if video["started_at"] is not None else video["created_at"]))
        resumed += 1
    log.info("unfinished videos after a restart: %d re-queued (re-run from their start), %d failed (file gone)",
             resumed, failed)
    return resumed, failed
