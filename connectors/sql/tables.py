"""SQLAlchemy Core descriptions of the tables that the migrations create (queries only; never ``create_all``).

JSON documents are stored as TEXT (portable); ``JsonText`` (de)serialises them with orjson.
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import BigInteger, Boolean, Column, Float, MetaData, String, Table, Text
from sqlalchemy.types import TypeDecorator


class JsonText(TypeDecorator[Any]):
    """A JSON document in a TEXT column."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else orjson.dumps(value).decode()

    def process_result_value(self, value: Any, dialect: Any) -> Any:
        return None if value is None else orjson.loads(value)


Double = Float(precision=53)
metadata = MetaData()

users = Table(
    "users", metadata,
    Column("id", String(64), primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", String(256), nullable=False),
    Column("role", String(16), nullable=False),
    Column("created_at", Double, nullable=False),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(64), nullable=False),
    Column("created_at", Double, nullable=False),
)

camera_groups = Table(
    "camera_groups", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

cameras = Table(
    "cameras", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("url", Text, nullable=False),
    Column("camera_group", String(64), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("roi", JsonText),
    Column("best_face_mode", String(16)),
    Column("filters", JsonText, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

watch_lists = Table(
    "watch_lists", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("color", String(16), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("threshold", Double),
    Column("camera_groups", JsonText, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

dossiers = Table(
    "dossiers", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("comment", Text, nullable=False),
    Column("meta", JsonText, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)

dossier_watch_lists = Table(
    "dossier_watch_lists", metadata,
    Column("dossier_id", String(64), primary_key=True),
    Column("watch_list_id", String(64), primary_key=True),
)

dossier_faces = Table(
    "dossier_faces", metadata,
    Column("id", String(64), primary_key=True),
    Column("dossier_id", String(64), nullable=False),
    Column("image_key", Text, nullable=False),
    Column("quality", Double, nullable=False),
    Column("bbox", JsonText, nullable=False),
    Column("descriptor", JsonText, nullable=False),
    Column("created_at", Double, nullable=False),
)

events = Table(
    "events", metadata,
    Column("id", String(256), primary_key=True),
    Column("face_id", String(256), nullable=False),
    Column("camera_id", String(64), nullable=False),
    Column("camera_group", String(64), nullable=False),
    Column("track_id", BigInteger, nullable=False),
    Column("timestamp", Double, nullable=False),
    Column("offset_s", Double),
    Column("matched", Boolean, nullable=False),
    Column("dossier_id", String(64)),
    Column("dossier_name", String(256)),
    Column("confidence", Double, nullable=False),
    Column("quality", Double, nullable=False),
    Column("bbox", JsonText, nullable=False),
    Column("attributes", JsonText, nullable=False),
    Column("frame_key", Text),
    Column("thumbnail_key", Text),
    Column("video_id", String(64)),
    Column("episode_id", String(256)),
    Column("acknowledged", Boolean, nullable=False),
    Column("acknowledged_at", Double),
    Column("acknowledged_by", String(128)),
    Column("created_at", Double, nullable=False),
)

event_watch_lists = Table(
    "event_watch_lists", metadata,
    Column("event_id", String(256), primary_key=True),
    Column("watch_list_id", String(64), primary_key=True),
)

videos = Table(
    "videos", metadata,
    Column("id", String(64), primary_key=True),
    Column("filename", String(512), nullable=False),
    Column("media_key", Text, nullable=False),
    Column("camera_id", String(128), nullable=False),
    Column("camera_group", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("frames_done", BigInteger, nullable=False),
    Column("frames_total", BigInteger, nullable=False),
    Column("error", Text),
    Column("created_at", Double, nullable=False),
    Column("updated_at", Double, nullable=False),
)
