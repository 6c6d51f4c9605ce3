"""Engines: ONNX Runtime selection and reuse here; TensorRT only where CUDA exists."""

from __future__ import annotations

import numpy as np
import pytest

from models.config import ModelSettings
from models.engines import (
    OnnxRuntimeEngine,
    ShapeProfile,
    cuda_available,
    image_input_model,
    open_engine,
    plan_cache_key,
    resolve_engine,
)
from models.faces import FaceModels
from tests.conftest import model_settings


def test_auto_picks_onnxruntime_without_cuda() -> None:
    if cuda_available():
        pytest.skip("CUDA is present: auto picks TensorRT here")
    assert resolve_engine(ModelSettings(engine="auto")) == "onnxruntime"


def test_plan_key_changes_with_every_input() -> None:
    profile = ShapeProfile((1, 3, 150, 150), (8, 3, 150, 150), (32, 3, 150, 150))
    base = plan_cache_key(b"model", "H100-sm90", "10.3.0", True, profile)
    assert base != plan_cache_key(b"model2", "H100-sm90", "10.3.0", True, profile)
    assert base != plan_cache_key(b"model", "A10-sm86", "10.3.0", True, profile)
    assert base != plan_cache_key(b"model", "H100-sm90", "10.4.0", True, profile)
    assert base != plan_cache_key(b"model", "H100-sm90", "10.3.0", False, profile)


def test_emotion_engine_runs_a_batch(face_models: FaceModels) -> None:
    settings = model_settings()
    profile = ShapeProfile((1, 1, 64, 64), (8, 1, 64, 64), (32, 1, 64, 64))
    engine = open_engine(settings.cache_dir / "emotion.onnx", settings, profile)
    assert isinstance(engine, OnnxRuntimeEngine)
    probs = engine.run(np.zeros((3, 1, 64, 64), np.float32))[0]
    assert probs.shape == (3, 7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_an_image_input_engine_gives_the_float_models_outputs(face_models: FaceModels) -> None:
    """uint8 NHWC images through ``image_input`` (Transpose + Cast inside the graph) = the same images as
    float32 NCHW through the model as stored."""
    settings = model_settings()
    profile = ShapeProfile((1, 3, 150, 150), (8, 3, 150, 150), (32, 3, 150, 150))
    path = settings.cache_dir / "dlib_resnet-int8.onnx"
    images = np.random.default_rng(0).integers(0, 256, (3, 150, 150, 3), dtype=np.uint8)
    got = open_engine(path, settings, profile, image_input=True).run(images)[0]
    ref = open_engine(path, settings, profile).run(images.transpose(0, 3, 1, 2).astype(np.float32))[0]
    np.testing.assert_array_equal(got, ref)


@pytest.mark.gpu
def test_tensorrt_matches_onnxruntime(face_models: FaceModels) -> None:
    if not cuda_available():
        pytest.skip("TensorRT test needs an NVIDIA GPU with CUDA and `pip install 'facestream[gpu]'` (none here)")
    from models.engines import TensorRTEngine

    settings = model_settings().model_copy(update={"engine": "tensorrt", "tensorrt_fp16": False})
    path = settings.cache_dir / "dlib_resnet.onnx"
    profile = ShapeProfile((1, 3, 150, 150), (8, 3, 150, 150), (32, 3, 150, 150))
    chips = np.random.default_rng(0).uniform(0, 255, (4, 3, 150, 150)).astype(np.float32)
    trt_out = TensorRTEngine(path, settings, profile).run(chips)[0]
    ort_out = OnnxRuntimeEngine(path, threads=2).run(chips)[0]
    np.testing.assert_allclose(trt_out, ort_out, atol=1e-3)
    images = np.ascontiguousarray(chips.transpose(0, 2, 3, 1).astype(np.uint8))
    trt_images = TensorRTEngine(path, settings, profile, image_input=True).run(images)[0]
    ort_images = OnnxRuntimeEngine(path, threads=2, image_input=True).run(images)[0]
    np.testing.assert_allclose(trt_images, ort_images, atol=1e-3)


def test_an_image_input_model_expands_the_per_channel_mean_to_the_image(face_models: FaceModels) -> None:
    """dlib's mean subtraction ([1, 3, 1, 1]) becomes a [1, 3, 150, 150] constant of the same values (ONNX
    Runtime then broadcasts it over the batch only); the outputs stay identical (the test above)."""
    import onnx
    from onnx import numpy_helper

    path = model_settings().cache_dir / "dlib_resnet-int8.onnx"
    stored, rewritten = onnx.load(str(path)), onnx.load_from_string(image_input_model(path))
    mean = {i.name: numpy_helper.to_array(i) for i in stored.graph.initializer}["mean_rgb_1"]
    full = {i.name: numpy_helper.to_array(i) for i in rewritten.graph.initializer}["mean_rgb_1"]
    assert mean.shape == (1, 3, 1, 1) and full.shape == (1, 3, 150, 150)
    np.testing.assert_array_equal(full, np.broadcast_to(mean, full.shape))
