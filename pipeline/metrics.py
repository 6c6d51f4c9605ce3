"""Prometheus metrics shared by every stage (one process may run several stages: the ``stage`` label)."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_IN = Counter("facestream_messages_in_total", "Messages consumed by a stage.", ["stage"])
MESSAGES_OUT = Counter("facestream_messages_out_total", "Messages produced by a stage.", ["stage", "topic"])
ERRORS = Counter("facestream_errors_total", "Handler failures (before per-message retry).", ["stage"])
DEAD_LETTERS = Counter("facestream_dead_letters_total", "Messages sent to the dead-letter topic.", ["stage"])
BATCH_SIZE = Histogram(
    "facestream_batch_size", "Messages per handled batch.", ["stage"], buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
HANDLE_SECONDS = Histogram("facestream_handle_seconds", "Time to handle one batch.", ["stage"])
COMMIT_SECONDS = Histogram("facestream_commit_seconds", "Produce-ack plus commit time per batch.", ["stage"])
EVENT_LATENCY = Histogram(
    "facestream_frame_to_output_seconds", "Age of the source frame when a stage emits.", ["stage"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
LOOP_LAG = Gauge("facestream_loop_lag_seconds", "Event-loop lag: how late a 0.25 s timer fired.")
HEALTHY = Gauge("facestream_stage_up", "1 while the stage runs, 0 after it stopped or failed.", ["stage"])
FRAMES_DECODED = Counter("facestream_frames_decoded_total", "Frames decoded and published.", ["camera"])
FRAMES_PREDICTED = Counter("facestream_frames_predicted_total", "Frames the detector did not run on "
                           "(detector.detect_interval_s): the tracker predicted its faces' boxes.", ["camera"])
FACES_DETECTED = Counter("facestream_faces_detected_total", "Faces detected in frames.", ["stage"])
ROLE_RESTARTS = Counter("facestream_role_restarts_total", "Roles restarted after a crash (facestream up).", ["role"])
RESOURCES_OPENED = Counter(
    "facestream_resources_opened_total", "Shared resources opened in this process (sql, producer, vectors, media, "
    "face_models): the composition root opens each once.", ["kind"])
FRAMES_DROPPED = Counter("facestream_frames_dropped_total", "Frames not published or not detected, by reason.",
                         ["camera", "reason"])
INPUT_AGE = Histogram(
    "facestream_input_age_seconds", "Age of a stage's input when it takes it: now minus the record's produce time.",
    ["stage"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LIVE_DETECT_STRETCH = Gauge(
    "facestream_live_detect_stretch_seconds", "Seconds a detector adds to its live cameras' detection interval "
    "to keep up (detector.live_target_age_s; 0: it keeps up at detector.detect_interval_s).", ["detector"])
SOURCE_UP = Gauge("facestream_source_up", "1 while a camera source is open.", ["camera"])
PLUGIN_FACES = Counter("facestream_plugin_faces_total", "Faces a face plug-in took, by outcome: processed, skipped "
                       "(preprocess wanted nothing), failed (dead-lettered).", ["plugin", "outcome"])
PLUGIN_EXTRAS_MISSING = Counter(
    "facestream_plugin_extras_missing_total", "Extras a face plug-in asked for that the pipeline had not computed "
    "for the face (see models.attributes, models.event_liveness): passed as None.", ["plugin", "extra"])


async def watch_loop_lag(stop: asyncio.Event, interval: float = 0.25) -> None:
    """Measure how late the loop wakes: a blocked loop shows here first."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(interval)
        LOOP_LAG.set(max(0.0, time.perf_counter() - start - interval))
