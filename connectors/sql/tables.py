"""Every SQL table, declared once: SQLAlchemy Core ``Table``s on one ``metadata`` (queries only; the schema
is created by the migrations in ``migrations/``, never ``create_all``). ``tests/unit/test_sql_schema.py``
migrates an empty database and checks it equals these declarations (tables, columns, types, nullability,
primary keys): a migration and its declaration change together.

JSON documents are stored as TEXT (portable); ``JsonText`` (de)serialises them with orjson (the notification
tables' JSON columns are plain ``Text`` their repositories encode).
"""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import BigInteger, Boolean, Column, Float, MetaData, String, Table, Text
from sqlalchemy.types import TypeDecorator

from connectors.sql.attributes import EPISODE_COLUMNS, EVENT_COLUMNS, attribute_columns


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
    Column("kind", String(16), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("expires_at", Double, nullable=False),
)

api_secrets = Table(
    "api_secrets", metadata,
    Column("name", String(64), primary_key=True),
    Column("value", String(256), nullable=False),
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
    Column("labels", JsonText, nullable=False),
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
    Column("faces_used", BigInteger),  # NULL: stored before migrations/0511
    Column("quality", Double, nullable=False),
    Column("bbox", JsonText, nullable=False),
    Column("attributes", JsonText, nullable=False),
    *attribute_columns(EVENT_COLUMNS),
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
    Column("started_at", Double),
)


# -- notifications: episodes, counters, webhooks (outbox, delivery log), Telegram (migrations/0100_notify.sql)

episodes = Table(
    "episodes", metadata,
    Column("id", String(256), primary_key=True),
    Column("camera_group", String(64), nullable=False),
    Column("video_id", String(64)),
    Column("opened_at", Double, nullable=False),
    Column("last_at", Double, nullable=False),
    Column("closed", Boolean, nullable=False),
    Column("close_reason", String(32)),
    Column("event_count", BigInteger, nullable=False),
    Column("matched", Boolean, nullable=False),
    Column("dossier_id", String(64)),
    Column("doc", Text, nullable=False),  # the full Episode (JSON)
    Column("acknowledged", Boolean, nullable=False),
    Column("acknowledged_at", Double),
    Column("acknowledged_by", String(128)),
    Column("updated_at", Double, nullable=False),
    *attribute_columns(EPISODE_COLUMNS),  # of the best event
)

episode_events = Table(
    "episode_events", metadata,
    Column("episode_id", String(256), primary_key=True),
    Column("event_id", String(256), primary_key=True),
)

episode_cameras = Table(
    "episode_cameras", metadata,
    Column("episode_id", String(256), primary_key=True),
    Column("camera_id", String(64), primary_key=True),
)

episode_watch_lists = Table(
    "episode_watch_lists", metadata,
    Column("episode_id", String(256), primary_key=True),
    Column("watch_list_id", String(64), primary_key=True),
)

counters = Table(
    "counters", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("camera_ids", Text, nullable=False),
    Column("camera_groups", Text, nullable=False),
    Column("interval_s", Double, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
)

counter_records = Table(
    "counter_records", metadata,
    Column("counter_id", String(64), primary_key=True),
    Column("start_at", Double, primary_key=True),
    Column("end_at", Double, nullable=False),
    Column("faces", BigInteger, nullable=False),
    Column("matched", BigInteger, nullable=False),
    Column("unmatched", BigInteger, nullable=False),
    Column("camera_ids", Text, nullable=False),
    Column("final", Boolean, nullable=False),
    Column("updated_at", Double, nullable=False),
)

webhooks = Table(
    "webhooks", metadata,
    Column("id", String(64), primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),
    Column("topics", Text, nullable=False),
    Column("filters", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("max_attempts", BigInteger),
    Column("created_at", Double, nullable=False),
)

webhook_outbox = Table(
    "webhook_outbox", metadata,
    Column("webhook_id", String(64), primary_key=True),
    Column("item_id", String(512), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries", metadata,
    Column("id", String(64), primary_key=True),
    Column("webhook_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", BigInteger, nullable=False),
    Column("item_ids", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("last_attempt_at", Double),
    Column("http_status", BigInteger),
    Column("error", Text),
)

telegram_rules = Table(
    "telegram_rules", metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("chat_id", String(128), nullable=False),
    Column("filters", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
)

telegram_cooldowns = Table(
    "telegram_cooldowns", metadata,
    Column("chat_id", String(128), primary_key=True),
    Column("person_key", String(256), primary_key=True),
    Column("sent_at", Double, nullable=False),
)

telegram_outbox = Table(
    "telegram_outbox", metadata,
    Column("id", String(512), primary_key=True),
    Column("chat_id", String(128), nullable=False),
    Column("caption", Text, nullable=False),
    Column("thumbnail_key", Text),
    Column("status", String(16), nullable=False),
    Column("attempts", BigInteger, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("next_attempt_at", Double, nullable=False),
    Column("error", Text),
)


# -- detections kept for references (migrations/0500_detections.sql)

detections = Table(
    "detections", metadata,
    Column("id", String(64), primary_key=True),
    Column("batch_id", String(64), nullable=False),
    Column("image_key", Text, nullable=False),
    Column("bbox", JsonText, nullable=False),
    Column("quality", Double, nullable=False),
    Column("descriptor", JsonText, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("expires_at", Double, nullable=False),
)
