"""Topic names, what each carries, and the one way to encode and decode their messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter, ValidationError

from schemas.base import Message, SchemaError, is_envelope, open_envelope
from schemas.messages import (
    CameraChanged,
    CameraStatus,
    CounterRecord,
    DeadLetter,
    DescribedFace,
    EpisodeChanged,
    EpisodeStateRecord,
    Face,
    FaceEvent,
    Frame,
    GalleryChange,
    MemberReport,
    StreamEnd,
    VideoJob,
    VideoProgress,
)


@dataclass(frozen=True)
class TopicSpec:
    name: str  # without the configured prefix
    schema: Any  # a Message subclass, or a union of them discriminated by ``kind``
    key: str  # what the key is, for documentation
    large: bool = False  # carries frames: its own retention and message size
    keep_forever: bool = False  # a changelog replayed from the start (compacted on real Kafka)
    short_lived: bool = False  # reports only the latest of which matters: ``kafka.status_retention_ms``
    _adapter: TypeAdapter[Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_adapter", TypeAdapter(self.schema))

    def decode(self, raw: bytes | None) -> Any:
        if raw is None:
            raise SchemaError(f"{self.name}: empty message")
        try:
            if is_envelope(raw):  # binary: frames, faces (see schemas.base)
                return self._adapter.validate_python(open_envelope(raw))
            return self._adapter.validate_json(raw)
        except ValidationError as exc:
            raise SchemaError(f"{self.name}: {exc}") from exc

    @staticmethod
    def encode(message: Message) -> bytes:
        return message.to_bytes()


def _or_end(schema: type[Message]) -> Any:
    return Annotated[schema | StreamEnd, Field(discriminator="kind")]


FRAMES = TopicSpec("frames", _or_end(Frame), "camera id", large=True)
FACES = TopicSpec("faces", _or_end(Face), "camera id")
DESCRIPTORS = TopicSpec("descriptors", _or_end(DescribedFace), "camera id")
EVENTS = TopicSpec("events", _or_end(FaceEvent), "camera id")
GALLERY = TopicSpec("gallery-changes", GalleryChange, "watch list or dossier id", keep_forever=True)
CAMERAS = TopicSpec("cameras", CameraChanged, "camera id", keep_forever=True)
VIDEO_JOBS = TopicSpec("video-jobs", VideoJob, "video id")
VIDEO_STATUS = TopicSpec("video-status", VideoProgress, "video id")
DEAD_LETTER = TopicSpec("dead-letter", DeadLetter, "stage")
EPISODES = TopicSpec("episodes", EpisodeChanged, "episode id")
EPISODE_STATE = TopicSpec("episode-state", EpisodeStateRecord, "episode id", keep_forever=True)
COUNTER_RECORDS = TopicSpec("counter-records", CounterRecord, "counter id")
STAGE_MEMBERS = TopicSpec("stage-members", MemberReport, "client id")  # ops status: who owns which partitions
CAMERA_STATUS = TopicSpec("camera-status", CameraStatus, "camera id", short_lived=True)  # camera health

CORE_TOPICS: tuple[TopicSpec, ...] = (
    FRAMES, FACES, DESCRIPTORS, EVENTS, GALLERY, CAMERAS, VIDEO_JOBS, VIDEO_STATUS, DEAD_LETTER,
    EPISODES, EPISODE_STATE, COUNTER_RECORDS, STAGE_MEMBERS, CAMERA_STATUS,
)
