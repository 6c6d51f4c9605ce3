"""Rolling upgrades: a consumer reads a newer minor version (extra fields ignored, at any depth) and refuses a
newer major one with a reason that says so; its own version stays strict."""

from __future__ import annotations

import orjson
import pytest

from schemas.base import SCHEMA_VERSION, SchemaError
from schemas.messages import DossierChanged, DossierFace, Frame, GalleryChange, StreamEnd
from schemas.topics import FRAMES, GALLERY


def _gallery_json(version: object, extra: bool) -> bytes:
    change = GalleryChange(dossier=DossierChanged(dossier_id="d1", name="Ann", watch_list_ids=["w"],
                                                  faces=[DossierFace(face_id="f1", descriptor=[0.1] * 128)]))
    doc = orjson.loads(change.to_bytes())
    doc["schema_version"] = version
    if extra:  # what a producer one minor ahead may add: new fields at the top and inside nested messages
        doc["priority"] = 3
        doc["dossier"]["colour"] = "red"
        doc["dossier"]["faces"][0]["quality"] = 0.9
    return orjson.dumps(doc)


def _frame_envelope(version: str, extra: bool) -> bytes:
    frame = Frame(camera_id="cam", frame_no=7, timestamp=1.0, width=2, height=2, jpeg=b"\xff\xd8jpeg")
    raw = frame.to_bytes()
    meta_len = int.from_bytes(raw[4:8], "big")
    meta = orjson.loads(raw[8:8 + meta_len])
    meta["schema_version"] = version
    if extra:
        meta["exposure_ms"] = 4
    new_meta = orjson.dumps(meta)
    return raw[:4] + len(new_meta).to_bytes(4, "big") + new_meta + raw[8 + meta_len:]


def test_a_newer_minor_version_is_read_and_its_new_fields_ignored() -> None:
    change = GALLERY.decode(_gallery_json("1.7", extra=True))
    assert change.dossier is not None and change.dossier.faces[0].face_id == "f1"
    assert GalleryChange.from_bytes(_gallery_json("1.7", extra=True)).dossier.name == "Ann"  # type: ignore[union-attr]
    frame = FRAMES.decode(_frame_envelope("1.2", extra=True))
    assert isinstance(frame, Frame) and frame.jpeg == b"\xff\xd8jpeg" and frame.frame_no == 7
    end = FRAMES.decode(orjson.dumps({**orjson.loads(StreamEnd(camera_id="cam").to_bytes()),
                                      "schema_version": "1.1", "reason": "eof"}))
    assert isinstance(end, StreamEnd)


def test_a_newer_major_version_is_refused_with_a_clear_reason() -> None:
    for raw in (_gallery_json("2.0", extra=False), _frame_envelope("3.1", extra=True)):
        topic = GALLERY if raw[:1] == b"{" else FRAMES
        with pytest.raises(SchemaError, match=r"newer major version than this consumer's 1\.0: upgrade"):
            topic.decode(raw)


def test_own_version_stays_strict_and_old_integer_versions_read() -> None:
    with pytest.raises(SchemaError, match="priority"):
        GALLERY.decode(_gallery_json(SCHEMA_VERSION, extra=True))
    with pytest.raises(SchemaError, match="exposure_ms"):
        FRAMES.decode(_frame_envelope("1.0", extra=True))
    old = GALLERY.decode(_gallery_json(1, extra=False))  # producers before "MAJOR.MINOR" sent an integer
    assert old.schema_version == "1.0" and old.dossier is not None
    with pytest.raises(SchemaError, match=r"MAJOR\.MINOR"):
        GALLERY.decode(_gallery_json("one", extra=False))
