"""Watch-list matching rules: thresholds, overrides, camera groups, inactive lists and dossiers."""

import numpy as np

from agents.matching import Gallery
from schemas.messages import DossierChanged, DossierFace, GalleryChange, WatchListChanged


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def near(v: np.ndarray, noise: float, seed: int = 99) -> np.ndarray:
    w = v + noise * np.random.default_rng(seed).normal(size=128).astype(np.float32) / np.sqrt(128)
    return (w / np.linalg.norm(w)).astype(np.float32)


def gallery(threshold: float = 0.8, wl_threshold: float | None = None, groups: list[str] | None = None) -> Gallery:
    g = Gallery(lambda s: np.clip(s, 0, 1), threshold)
    g.apply(GalleryChange(watch_list=WatchListChanged(watch_list_id="wl", threshold=wl_threshold,
                                                      camera_groups=groups or [])))
    for i, name in enumerate(["ann", "bob"]):
        face = DossierFace(face_id=f"{name}-1", descriptor=unit(i).tolist())
        g.apply(GalleryChange(dossier=DossierChanged(dossier_id=name, name=name.title(), watch_list_ids=["wl"],
                                                     faces=[face])))
    return g


def test_a_close_face_matches_its_dossier_and_a_stranger_does_not() -> None:
    results = gallery().match(np.stack([near(unit(1), 0.3), unit(7)]), "default")
    assert results[0].matched and results[0].dossier_id == "bob" and results[0].watch_list_ids == ["wl"]
    assert not results[1].matched and results[1].dossier_id is None


def test_watch_list_threshold_overrides_the_global_one() -> None:
    face = np.stack([near(unit(0), 0.6)])
    conf = gallery().match(face, "default")[0].confidence
    assert gallery(threshold=conf + 0.01).match(face, "default")[0].matched is False
    assert gallery(threshold=conf + 0.01, wl_threshold=conf - 0.01).match(face, "default")[0].matched is True


def test_watch_lists_apply_only_to_their_camera_groups() -> None:
    g = gallery(groups=["lobby"])
    face = np.stack([unit(0)])
    assert g.match(face, "lobby")[0].matched
    assert not g.match(face, "parking")[0].matched


def test_deactivated_watch_list_and_deleted_dossier_stop_matching() -> None:
    g = gallery()
    g.apply(GalleryChange(dossier=DossierChanged(dossier_id="ann", deleted=True)))
    assert not g.match(np.stack([unit(0)]), "default")[0].matched
    assert g.match(np.stack([unit(1)]), "default")[0].matched
    g.apply(GalleryChange(watch_list=WatchListChanged(watch_list_id="wl", active=False)))
    assert not g.match(np.stack([unit(1)]), "default")[0].matched
