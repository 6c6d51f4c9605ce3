"""SQL store: migrations and repositories on a SQLite file in tmp_path and on a PostgreSQL server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text

from connectors.sql.base import ConflictError, InvalidCursorError, NotFoundError, ReferenceError_
from connectors.sql.dossiers import DossierRepository
from connectors.sql.engine import (
    MIGRATIONS_DIR,
    applied_versions,
    create_engine,
    load_migrations,
    migrate,
    open_sql,
    split_statements,
)
from connectors.sql.entities import (
    CameraGroupRepository,
    CameraRepository,
    WatchListRepository,
    camera_changed,
)
from connectors.sql.events import EventRepository
from connectors.sql.users import Lifetimes, UserRepository, check_password, hash_password
from connectors.sql.videos import VideoRepository
from pipeline.settings import Settings
from schemas.api import CameraIn, DossierIn, EventFilters, WatchListIn
from schemas.messages import FaceEvent, VideoProgress


def _url(key: str) -> str:
    return f"/v1/media/{key}"


@pytest_asyncio.fixture(loop_scope="function")  # the test's own loop: asyncpg connections are bound to one
async def engine(tmp_path: Path, sql_store: dict[str, str]):
    eng = await open_sql(Settings(data_dir=tmp_path, store=sql_store))
    yield eng
    await eng.dispose()


def _event(i: int, matched: bool = False, ts: float = 1000.0, wls: list[str] | None = None,
           faces_used: int = 1) -> FaceEvent:
    return FaceEvent(event_id=f"cam:1:{i}", face_id=f"cam:1:{i}", camera_id="cam", track_id=1, timestamp=ts + i,
                     matched=matched, dossier_id="d1" if matched else None, watch_list_ids=wls or [],
                     confidence=0.9 if matched else 0.3, quality=0.8, bbox=(1, 2, 3, 4), descriptor=[0.0] * 128,
                     faces_used=faces_used, thumbnail_key=f"thumbs/{i}.jpg", frame_key="frames/cam/1.jpg")


def test_split_statements_handles_comments_and_multiline() -> None:
    sql = "-- header\nCREATE TABLE a (\n  x INT\n);\nINSERT INTO a VALUES (1);\n"
    assert split_statements(sql) == ("CREATE TABLE a (\n  x INT\n)", "INSERT INTO a VALUES (1)")


async def test_migrations_apply_once_and_record(engine, tmp_path: Path) -> None:
    versions = [m.version for m in load_migrations()]
    assert versions and versions == sorted(versions)
    assert await applied_versions(engine) == versions
    assert await migrate(engine) == []  # idempotent


async def test_extra_migration_directory(engine, tmp_path: Path) -> None:
    extra = tmp_path / "mig"
    extra.mkdir()
    (extra / "9999_extra.sql").write_text("CREATE TABLE IF NOT EXISTS extra_t (id VARCHAR(8) PRIMARY KEY);\n")
    assert await migrate(engine, extra) == ["9999"]
    assert "9999" in await applied_versions(engine)


async def test_users_tokens_and_passwords(engine) -> None:
    users = UserRepository(engine)
    stored = hash_password("secret1")
    assert check_password("secret1", stored) and not check_password("nope", stored)
    user = await users.create("ann", stored, "operator")
    with pytest.raises(ConflictError):
        await users.create("ann", stored, "viewer")
    pair = await users.open_session(user.id, Lifetimes(60, 600))
    assert (await users.user_for_token(pair.access_token)).user.username == "ann"
    assert await users.user_for_token(pair.refresh_token) is None  # a refresh token is no access token
    refreshed = await users.refresh_session(pair.refresh_token, Lifetimes(60, 600))
    assert refreshed is not None and refreshed[1].username == "ann"
    assert await users.refresh_session(pair.refresh_token, Lifetimes(60, 600)) is None  # once only: a replay...
    assert await users.user_for_token(refreshed[0].access_token) is None  # ...ends the session
    other = await users.open_session(user.id, Lifetimes(60, 600))
    await users.end_session(other.refresh_token)
    assert await users.user_for_token(other.access_token) is None
    expired = await users.open_session(user.id, Lifetimes(-1, 600))
    assert await users.user_for_token(expired.access_token) is None


async def test_camera_crud_references_and_pagination(engine) -> None:
    cams, groups = CameraRepository(engine), CameraGroupRepository(engine)
    with pytest.raises(ReferenceError_):
        await cams.create(CameraIn(name="x", url="0", camera_group="nope"))
    made = [await cams.create(CameraIn(name=f"c{i}", url=f"rtsp://h/{i}")) for i in range(5)]
    page, cursor = await cams.list_page(2)
    seen = [c.id for c in page]
    while cursor:
        page, cursor = await cams.list_page(2, cursor)
        seen += [c.id for c in page]
    assert seen == [c.id for c in made]
    roi = [(0.0, 0.0), (100.0, 0.0), (100.0, 50.0)]
    changed = await cams.update(made[0].id, {"active": False, "roi": roi})
    assert changed.active is False and changed.roi == roi
    assert camera_changed(changed).roi == roi
    with pytest.raises(ConflictError):
        await groups.delete("default")
    with pytest.raises(InvalidCursorError):
        await cams.list_page(2, "garbage!")
    await cams.delete(made[0].id)
    with pytest.raises(NotFoundError):
        await cams.get(made[0].id)


async def test_dossier_faces_and_gallery_state(engine) -> None:
    wls, dossiers = WatchListRepository(engine), DossierRepository(engine, _url)
    wl = await wls.create(WatchListIn(name="vip"))
    with pytest.raises(ReferenceError_):
        await dossiers.create(DossierIn(name="x", watch_lists=["missing"]))
    d = await dossiers.create(DossierIn(name="Lin", meta={"k": [1, 2]}, watch_lists=[wl.id]))
    await dossiers.add_face(d.id, "f1", f"dossiers/{d.id}/f1.jpg", 0.9, (1, 2, 3, 4), [0.1] * 128)
    got = await dossiers.get(d.id)
    assert got.faces[0].image == f"/v1/media/dossiers/{d.id}/f1.jpg" and got.meta == {"k": [1, 2]}
    state = await dossiers.gallery_state(d.id)
    assert state.watch_list_ids == [wl.id] and len(state.faces) == 1 and not state.deleted
    await wls.delete(wl.id)
    assert (await dossiers.get(d.id)).watch_lists == []
    assert await dossiers.delete(d.id) == [f"dossiers/{d.id}/f1.jpg"]
    assert (await dossiers.gallery_state(d.id)).deleted


async def test_event_upsert_is_idempotent_and_keeps_acknowledgement(engine) -> None:
    events = EventRepository(engine, _url)
    await events.upsert_many([_event(1, True, wls=["w1"]), _event(2)])
    await events.acknowledge("cam:1:1", "ann")
    await events.upsert_many([_event(1, True, wls=["w1", "w2"]), _event(1, True, wls=["w1", "w2"])])
    assert await events.count() == 2
    one = await events.get("cam:1:1")
    assert one.acknowledged and one.watch_lists == ["w1", "w2"] and one.thumbnail == "/v1/media/thumbs/1.jpg"
    matched, _ = await events.list_page(EventFilters(matched=True), 10)
    assert [e.id for e in matched] == ["cam:1:1"]
    by_wl, _ = await events.list_page(EventFilters(watch_list="w2"), 10)
    assert len(by_wl) == 1
    newest_first, cursor = await events.list_page(EventFilters(), 1)
    assert newest_first[0].id == "cam:1:2" and cursor
    rest, cursor = await events.list_page(EventFilters(), 1, cursor)
    assert rest[0].id == "cam:1:1" and cursor is None


async def test_event_keeps_how_many_faces_decided_it(engine) -> None:
    events = EventRepository(engine, _url)
    await events.upsert_many([_event(1, True, faces_used=7), _event(2)])
    assert (await events.get("cam:1:1")).faces_used == 7 and (await events.get("cam:1:2")).faces_used == 1
    await events.upsert_many([_event(1, True, faces_used=9)])  # a realtime track's later decision replaces it
    assert (await events.get("cam:1:1")).faces_used == 9


async def test_events_stored_before_faces_used_read_as_unknown(tmp_path: Path) -> None:
    """An event row written by the schema before migration 0511 reads back with ``faces_used`` None."""
    before = tmp_path / "before"
    before.mkdir()
    for m in load_migrations():
        if m.version < "0511":
            shutil.copy(MIGRATIONS_DIR / m.name, before / m.name)
    engine = create_engine(Settings(data_dir=tmp_path))
    try:
        await migrate(engine, before)
        async with engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO events (id, face_id, camera_id, camera_group, track_id, timestamp, matched, confidence,"
                " quality, bbox, attributes, acknowledged, created_at) VALUES ('old', 'old', 'cam', 'default', 1, 5,"
                " FALSE, 0.2, 0.5, '[1, 2, 3, 4]', '{}', FALSE, 5)"))
        assert "0511" in await migrate(engine)
        old = await EventRepository(engine, _url).get("old")
        assert old.faces_used is None and old.confidence == 0.2
    finally:
        await engine.dispose()


async def test_event_purge_keeps_shared_frames(engine) -> None:
    events = EventRepository(engine, _url)
    await events.upsert_many([_event(1, True, ts=100), _event(2, False, ts=100)])
    ids, keys = await events.purge(matched_before=50, unmatched_before=200)
    assert ids == ["cam:1:2"] and keys == ["thumbs/2.jpg"]  # the frame is still used by event 1
    expired = await events.expire_frames(before=500)
    assert len(expired.event_ids) == 1 and expired.media_keys == ["frames/cam/1.jpg"]
    assert (await events.get("cam:1:1")).frame is None


async def test_deleting_a_videos_events_keeps_images_other_events_use(engine) -> None:
    events = EventRepository(engine, _url)
    of_video = [_event(i).model_copy(update={"video_id": "v1"}) for i in (1, 2, 3)]
    await events.upsert_many([*of_video, _event(4)])  # all share frames/cam/1.jpg; event 4 is live
    first = await events.delete_of_video("v1", limit=2)
    rest = await events.delete_of_video("v1", limit=2)
    assert sorted(first.event_ids + rest.event_ids) == ["cam:1:1", "cam:1:2", "cam:1:3"]
    assert sorted(first.media_keys + rest.media_keys) == ["thumbs/1.jpg", "thumbs/2.jpg", "thumbs/3.jpg"]
    assert (await events.delete_of_video("v1")).event_ids == []
    assert [e.id for e in (await events.list_page(EventFilters(), 10)).items] == ["cam:1:4"]


async def test_video_progress_and_done(engine) -> None:
    videos = VideoRepository(engine)
    await videos.create("v1", "clip.mp4", "videos/v1.mp4", "video:v1", "default")
    await videos.apply_progress(VideoProgress(video_id="v1", camera_id="video:v1", status="processing",
                                              frames_done=5, frames_total=10))
    v = await videos.get("v1")
    assert v.status == "processing" and v.progress == 0.5
    await videos.apply_progress(VideoProgress(video_id="v1", camera_id="video:v1", status="done",
                                              frames_done=10, frames_total=10))
    assert (await videos.get("v1")).status == "processing"  # decoded, not yet stored
    await videos.mark_done("v1", 10)
    await videos.apply_progress(VideoProgress(video_id="v1", camera_id="video:v1", status="processing"))
    v = await videos.get("v1")
    assert v.status == "done" and v.progress == 1.0
