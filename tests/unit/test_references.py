"""Kept detections expire; stored faces resolve (connectors/sql/references.py) on a real SQLite store."""

from __future__ import annotations

import time
from pathlib import Path

from connectors.api.references import crop, face_in_box, iou
from connectors.sql.engine import open_sql
from connectors.sql.references import Detection, DetectionRepository
from pipeline.settings import Settings


async def test_detections_expire_and_free_their_image(tmp_path: Path) -> None:
    engine = await open_sql(Settings(data_dir=tmp_path))
    try:
        repo = DetectionRepository(engine)
        faces = [Detection("a", (1, 2, 3, 4), 0.9, [0.1] * 128), Detection("b", (5, 6, 7, 8), 0.8, [0.2] * 128)]
        expires = await repo.save("batch", "detections/batch.jpg", faces, ttl_s=60)
        assert expires > time.time() + 59
        got = await repo.get("a")
        assert got is not None and got.bbox == (1, 2, 3, 4) and got.image_key == "detections/batch.jpg"
        assert await repo.get("a", now=expires + 1) is None and await repo.get("zzz") is None
        assert await repo.purge() == []
        assert await repo.purge(now=expires + 1) == ["detections/batch.jpg"]
        assert await repo.get("b") is None
    finally:
        await engine.dispose()


def test_box_choice_and_crop() -> None:
    import numpy as np

    from connectors.api.faces import AnalysedFace

    def face(box: tuple[float, float, float, float]) -> AnalysedFace:
        return AnalysedFace(box, ((0, 0),) * 5, 0.9, 0.9, None, {}, np.zeros((1, 1, 3), np.uint8))

    faces = [face((10, 10, 50, 50)), face((100, 10, 140, 50))]
    assert face_in_box(faces, (95, 5, 145, 55)).bbox == (100, 10, 140, 50)
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0 and iou((0, 0, 1, 1), (5, 5, 6, 6)) == 0.0
    image = np.zeros((100, 200, 3), np.uint8)
    part, box = crop(image, (100, 10, 140, 50))
    assert part.shape == (70, 80, 3) and box == (20, 10, 60, 50)  # clipped at the top
