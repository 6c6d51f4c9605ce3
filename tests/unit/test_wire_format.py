"""Frames and faces travel as a binary envelope: the JPEG / chip bytes raw, the rest as JSON metadata."""

from __future__ import annotations

import base64
import struct

import pytest

from schemas.base import ENVELOPE_MAGIC, SchemaError
from schemas.messages import DescribedFace, Face, Frame, StreamEnd
from schemas.topics import DESCRIPTORS, FACES, FRAMES

JPEG = b"\xff\xd8" + bytes(range(256)) * 100 + b"\xff\xd9"


def frame() -> Frame:
    return Frame(camera_id="cam-1", frame_no=7, timestamp=1.5, width=640, height=360, jpeg=JPEG, video_id="v")


def face(chip: bytes = b"\x01" * 67500) -> Face:
    return Face(face_id="cam-1:3:0", camera_id="cam-1", track_id=3, seq=0, frame_no=7, timestamp=1.5,
                bbox=(1, 2, 3, 4), landmarks=((1, 1), (2, 2), (3, 3), (4, 4), (5, 5)), det_score=0.9,
                quality=0.7, chip=chip)


def test_a_frame_record_is_its_jpeg_plus_a_small_header() -> None:
    raw = frame().to_bytes()
    assert raw.startswith(ENVELOPE_MAGIC)
    assert raw.endswith(JPEG)  # the JPEG bytes as they are: no base64, no JSON escaping
    assert len(raw) - len(JPEG) < 250
    assert FRAMES.decode(raw) == frame()
    assert Frame.from_bytes(raw) == frame()


def test_json_records_of_the_same_schema_still_decode() -> None:
    legacy = frame().model_dump_json().encode()  # base64 JSON, as records written before the envelope
    assert base64.urlsafe_b64encode(JPEG) in legacy
    assert FRAMES.decode(legacy) == frame()
    end = StreamEnd(camera_id="cam-1", frames_total=3)
    assert FRAMES.decode(end.to_bytes()) == end  # control messages stay JSON on the same topic


def test_faces_carry_the_raw_chip_and_descriptors_leave_it_behind() -> None:
    raw = face().to_bytes()
    assert raw.startswith(ENVELOPE_MAGIC) and len(raw) < 67500 + 600
    assert FACES.decode(raw) == face()
    described = DescribedFace(face=face(b""), descriptor=[0.0] * 128)
    assert len(described.to_bytes()) < 3000
    assert DESCRIPTORS.decode(described.to_bytes()) == described


@pytest.mark.parametrize("cut", [6, 12, -10])
def test_a_truncated_envelope_is_a_schema_error(cut: int) -> None:
    with pytest.raises(SchemaError, match=r"envelope|validation"):
        FRAMES.decode(frame().to_bytes()[:cut])


def test_an_envelope_with_bad_metadata_names_the_field() -> None:
    meta = b'{"kind":"frame","camera_id":"c","frame_no":-1,"timestamp":0}'
    raw = ENVELOPE_MAGIC + struct.pack(">I", len(meta)) + meta + b"\x04jpeg" + struct.pack(">I", 1) + b"x"
    with pytest.raises(SchemaError, match="frame_no"):
        FRAMES.decode(raw)
