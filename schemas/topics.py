"""Topic names, what each carries, and the one way to encode and decode their messages."""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Annotated, Any

import orjson
from pydantic import Field, TypeAdapter, ValidationError

from schemas.base import Message, SchemaError, compatible, is_envelope, open_envelope
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
    PluginNotice,
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

    _models: dict[str | None, type[Message]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_adapter", TypeAdapter(self.schema))
        object.__setattr__(self, "_models", _models_by_kind(self.schema))

    def decode(self, raw: bytes | None) -> Any:
        """The message of a record; ``SchemaError`` (a dead letter) when it does not fit, naming why; a newer
        minor version's extra fields are ignored, a newer major version is refused (``schemas.base``)."""
        if raw is None:
            raise SchemaError(f"{self.name}: empty message")
        try:
            if is_envelope(raw):  # binary: frames, faces (see schemas.base)
                fields = open_envelope(raw)
                return self._adapter.validate_python(compatible(self._model_of(fields), fields))
            return self._adapter.validate_json(self._compatible_json(raw))
        except ValidationError as exc:
            raise SchemaError(f"{self.name}: {exc}") from exc

    def _model_of(self, fields: dict[str, Any]) -> type[Message]:
        kind = fields.get("kind")
        return self._models.get(kind if isinstance(kind, str) else None) or next(iter(self._models.values()))

    def _compatible_json(self, raw: bytes) -> bytes:
        try:
            fields = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return raw  # pydantic says what is wrong with it
        if not isinstance(fields, dict):
            return raw
        kept = compatible(self._model_of(fields), fields)
        return raw if kept is fields else orjson.dumps(kept)

    @staticmethod
    def encode(message: Message) -> bytes:
        return message.to_bytes()


def _models_by_kind(schema: Any) -> dict[str | None, type[Message]]:
    """The message classes a topic schema holds, by their ``kind`` tag (None: a schema without one)."""
    if isinstance(schema, type) and issubclass(schema, Message):
        return {None: schema}
    members: list[type[Message]] = []

    def collect(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, Message):
            members.append(annotation)
        else:
            for arg in typing.get_args(annotation):
                collect(arg)

    collect(schema)
    out: dict[str | None, type[Message]] = {}
    for model in members:
        default = model.model_fields["kind"].default if "kind" in model.model_fields else None
        out[default if isinstance(default, str) else None] = model
    return out


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
PLUGIN_NOTICES = TopicSpec("plugin-notices", PluginNotice, "plug-in name")  # what face plug-ins noticed

CORE_TOPICS: tuple[TopicSpec, ...] = (
    FRAMES, FACES, DESCRIPTORS, EVENTS, GALLERY, CAMERAS, VIDEO_JOBS, VIDEO_STATUS, DEAD_LETTER,
    EPISODES, EPISODE_STATE, COUNTER_RECORDS, STAGE_MEMBERS, CAMERA_STATUS, PLUGIN_NOTICES,
)
