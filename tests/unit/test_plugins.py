"""Detectors and descriptors are plug-ins: the settings choose them, third parties add them by entry point."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import pytest

from models.faces import FaceModels
from models.plugins import PluginError
from models.registry import DETECTOR_GROUP, descriptor_plugin, detector_plugin
from tests.conftest import FACES_DIR, model_settings


def test_the_defaults_are_centerface_and_dlib() -> None:
    settings = model_settings()
    assert (settings.detector, settings.descriptor) == ("centerface", "dlib_resnet")
    assert detector_plugin("centerface").name == "centerface"
    assert descriptor_plugin("dlib_resnet").name == "dlib_resnet"


def test_unknown_plugins_and_bad_options_fail_with_a_clear_message(face_models: FaceModels) -> None:
    with pytest.raises(PluginError, match=r"unknown detector plug-in 'yolo'.*centerface"):
        FaceModels.load(model_settings().model_copy(update={"detector": "yolo"}))
    with pytest.raises(PluginError, match=r"(?s)centerface options.*threshold"):
        FaceModels.load(model_settings().model_copy(update={"detector_options": {"threshold": 2.0}}))
    with pytest.raises(PluginError, match=r"(?s)dlib_resnet options.*colour"):
        FaceModels.load(model_settings().model_copy(update={"descriptor_options": {"colour": "rgb"}}))


def test_a_third_party_detector_from_an_entry_point_is_chosen_by_the_settings(
        face_models: FaceModels, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real package on sys.path: its dist-info declares a detector in the facestream.detectors group."""
    (tmp_path / "fs_tiny_faces.py").write_text(
        "from dataclasses import replace\n"
        "from models.detectors import centerface\n"
        "PLUGIN = replace(centerface.PLUGIN, name='tiny-faces', configure=lambda s: centerface.CenterFaceConfig("
        "threshold=0.5, max_side=4096, min_face=0))\n")
    info = tmp_path / "fs_tiny_faces-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fs-tiny-faces\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{DETECTOR_GROUP}]\ntiny-faces = fs_tiny_faces:PLUGIN\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    models = FaceModels.load(model_settings().model_copy(update={"detector": "tiny-faces"}))
    image = cv2.imread(str(FACES_DIR / "obama-1080p.jpg"))
    if image is None:
        pytest.skip("shared portraits not found")
    faces = models.detect([image])
    assert len(faces[0]) >= 1 and "fs_tiny_faces" in sys.modules
