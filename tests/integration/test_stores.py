"""Vectors, media and retention on the embedded defaults (Milvus Lite, a media folder, in tmp_path) and on real
servers (a Milvus standalone server, an S3-protocol server; tests/servers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from connectors.media import LocalMediaStore, MediaNotFoundError, check_key, open_media_store
from connectors.sql.engine import open_sql
from connectors.sql.events import EventRepository
from connectors.sql.retention import purge_expired
from connectors.vectors import EVENT_FACES, VectorStore, event_filter_expr, quote
from pipeline.settings import Settings
from schemas.api import EventFilters
from schemas.messages import FaceEvent


def _unit(seed: int) -> list[float]:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return (v / np.linalg.norm(v)).tolist()


def _event(i: int, ts: float, matched: bool, wls: list[str]) -> FaceEvent:
    return FaceEvent(event_id=f"e{i}", face_id=f"e{i}", camera_id="cam" if i % 2 else "other", track_id=i,
                     timestamp=ts, matched=matched, dossier_id="d1" if matched else None, watch_list_ids=wls,
                     quality=0.9, bbox=(0, 0, 10, 10), descriptor=_unit(i), thumbnail_key=f"thumbs/e{i}.jpg",
                     frame_key=f"frames/cam/{i}.jpg")


@pytest_asyncio.fixture(scope="module", params=["lite", "server"])
async def vectors(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    if request.param == "lite":
        uri = str(tmp_path_factory.mktemp("milvus") / "milvus.db")
    else:
        uri = request.getfixturevalue("milvus_server").new_database()
    store = VectorStore(uri)
    await store.start()
    yield store
    await store.close()


def test_filter_expression_quotes_values() -> None:
    assert quote('a"b') == '"a\\"b"'
    expr = event_filter_expr(EventFilters(camera="c1", matched=True, since=5, watch_list="w"))
    assert expr == 'camera == "c1" and matched == true and timestamp >= 5.0 and array_contains(watch_lists, "w")'


async def test_event_vectors_upsert_filter_and_delete(vectors: VectorStore) -> None:
    events = [_event(i, 100.0 + i, i < 3, ["w1"] if i == 1 else []) for i in range(6)]
    await vectors.upsert_events(events)
    await vectors.upsert_events(events[:2])  # redelivery: same rows
    assert await vectors.count(EVENT_FACES) == 6
    hits = await vectors.search_events(_unit(1), 3)
    assert hits[0].id == "e1" and hits[0].cosine == pytest.approx(1.0, abs=1e-5)
    only = await vectors.search_events(_unit(1), 10, EventFilters(watch_list="w1"))
    assert [h.id for h in only] == ["e1"]
    unmatched_cam = await vectors.search_events(_unit(4), 10, EventFilters(matched=False, camera="other"))
    assert {h.id for h in unmatched_cam} == {"e4"}
    await vectors.delete_events(["e4", "e5"])
    assert await vectors.count(EVENT_FACES) == 4


async def test_dossier_vectors(vectors: VectorStore) -> None:
    await vectors.upsert_dossier_faces("d1", [("f1", _unit(10)), ("f2", _unit(11))], ["w1"], True)
    await vectors.upsert_dossier_faces("d2", [("f3", _unit(12))], [], False)
    hits = await vectors.search_dossier_faces(_unit(11), 5)
    assert hits[0].id == "f2" and hits[0].fields["dossier_id"] == "d1"
    assert "f3" not in {h.id for h in hits}  # inactive
    await vectors.delete_dossier("d1")
    assert await vectors.search_dossier_faces(_unit(11), 5) == []


async def test_a_collection_found_without_its_index_is_indexed_and_loaded(
        request: pytest.FixtureRequest, tmp_path: Path, vectors: VectorStore) -> None:
    """As another role leaves it mid-creation (created, not yet indexed): starting beside it still works."""
    from pymilvus import MilvusClient

    uri = str(tmp_path / "milvus.db") if vectors.is_lite else request.getfixturevalue("milvus_server").new_database()
    schema = VectorStore(uri)._event_schema()
    client = MilvusClient(uri)
    client.create_collection(EVENT_FACES, schema=schema)
    assert not client.list_indexes(EVENT_FACES)
    client.close()
    store = VectorStore(uri)
    await store.start()
    try:
        await store.upsert_events([_event(1, 100.0, False, [])])
        hits = await store.search_events(_unit(1), limit=1)
        assert [h.id for h in hits] == ["e1"]
    finally:
        await store.close()


async def test_reads_see_the_writes_before_them(vectors: VectorStore) -> None:
    """Each search right after an upsert (and a delete) sees it: a Milvus server's default bounded
    consistency answered such a search with nothing for ~0.5 s."""
    for i in range(100, 106):
        await vectors.upsert_events([_event(i, 200.0 + i, False, [])])
        hits = await vectors.search_events(_unit(i), 1)
        assert hits and hits[0].id == f"e{i}", f"the search right after upserting e{i} missed it: {hits}"
    await vectors.delete_events([f"e{i}" for i in range(100, 106)])
    assert {h.id for h in await vectors.search_events(_unit(103), 10)}.isdisjoint({"e103"})


def test_media_store_roundtrip_and_safety(tmp_path: Path, media_store: dict[str, str]) -> None:
    media = open_media_store(Settings(data_dir=tmp_path, store=media_store))
    media.put("thumbs/a:1:2.jpg", b"jpeg", "image/jpeg")
    assert media.get("thumbs/a:1:2.jpg") == b"jpeg" and media.exists("thumbs/a:1:2.jpg")
    assert media.url_path("thumbs/a:1:2.jpg") == "/v1/media/thumbs/a:1:2.jpg"
    media.delete("thumbs/a:1:2.jpg")
    with pytest.raises(MediaNotFoundError):
        media.get("thumbs/a:1:2.jpg")
    for bad in ("../x", "/etc/passwd", "a/../../b", ""):
        with pytest.raises(ValueError):
            check_key(bad)
        with pytest.raises(ValueError):
            media.put(bad, b"x")


def test_media_files_stream_in_and_out(tmp_path: Path, media_store: dict[str, str]) -> None:
    """Videos go in and out as files (S3: managed multipart transfer), never whole in memory; 20 MiB crosses
    boto3's 8 MiB multipart threshold."""
    media = open_media_store(Settings(data_dir=tmp_path, store=media_store))
    source = tmp_path / "upload.part"
    block = np.random.default_rng(0).bytes(1024 * 1024)
    with open(source, "wb") as out:
        for i in range(20):
            out.write(bytes([i]) + block[1:])
    media.put_file("videos/v1.mp4", source, "video/mp4")
    copy = tmp_path / "copy.mp4"
    media.get_file("videos/v1.mp4", copy)
    assert copy.stat().st_size == source.stat().st_size and copy.read_bytes() == source.read_bytes()
    with pytest.raises(MediaNotFoundError):
        media.get_file("videos/missing.mp4", tmp_path / "missing.mp4")


async def test_retention_purges_rows_vectors_and_images(tmp_path: Path, vectors: VectorStore) -> None:
    settings = Settings(data_dir=tmp_path)
    engine = await open_sql(settings)
    try:
        media = LocalMediaStore(tmp_path / "media")
        repo = EventRepository(engine, media.url_path)
        day, now = 86400.0, 1_000_000.0
        old_unmatched = _event(20, now - 8 * day, False, [])
        old_matched = _event(21, now - 8 * day, True, [])  # kept: 30 days for matched
        fresh = _event(22, now - 1, False, [])
        batch = [old_unmatched, old_matched, fresh]
        await repo.upsert_many(batch)
        await vectors.upsert_events(batch)
        for e in batch:
            media.put(e.thumbnail_key, b"t")
            media.put(e.frame_key, b"f")
        report = await purge_expired(repo, vectors, media, settings.store, now=now)
        assert report.events == 1 and report.media == 2 and report.frames == 1
        assert not media.exists(old_unmatched.thumbnail_key) and not media.exists(old_matched.frame_key)
        assert media.exists(old_matched.thumbnail_key) and media.exists(fresh.frame_key)
        assert {h.id for h in await vectors.search_events(_unit(20), 50)}.isdisjoint({"e20"})
        assert await repo.count() == 2
    finally:
        await engine.dispose()
