"""Settings of the inference layer (a sub-tree of the root settings, ``FACESTREAM_MODELS_<NAME>``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field


def default_model_dir() -> Path:
    """The default model cache: ``<user cache dir>/facestream/models``."""
    return Path(platformdirs.user_cache_dir("facestream")) / "models"


class ModelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_dir: Path = Field(default_factory=default_model_dir, description="Where prepared ONNX models, the manifest and TensorRT plans live.")
    wheelhouse: Path | None = Field(None, description="Folder holding the pinned source distributions, for sites without network.")
    engine: Literal["auto", "onnxruntime", "tensorrt"] = Field("auto", description="Inference engine; auto picks TensorRT where CUDA is present.")
    threads: int = Field(2, ge=1, description="ONNX Runtime intra-op threads per session.")
    concurrent_runs: int = Field(2, ge=1, description="ONNX Runtime: a call with several inputs (the detector's due frames, a batch of descriptor chips) runs as this many parts at once, each on a session with threads // concurrent_runs intra-op threads (at least 1; with threads 1 every run is single-threaded, several at once); a single input runs on all threads. 2 on 2 cores: two single-threaded runs at once gave the int8 detector 114 frames/s against 77 on one two-thread run, the int8 descriptor 822 faces/s at batch 32 against 628 (bench models, ONNX Runtime session options). 1: one run on all threads.")
    spin_wait: bool = Field(False, description="ONNX Runtime's intra-op threads spin-wait for work instead of sleeping: faster on a machine whose cores the models have to themselves (bench models: ONNX Runtime session options), slower where other stages or jobs share the cores (the spinning steals them), so off by default.")
    detector: str = Field("centerface", description="Face detector plug-in (models.registry; third parties: entry-point group facestream.detectors).")
    detector_options: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Options of the detector plug-in, validated by its config when the models load (CenterFace's: threshold, nms_iou, max_side, min_face, precision; they default to the detector_* settings).")
    descriptor: str = Field("dlib_resnet", description="Face descriptor plug-in (models.registry; third parties: entry-point group facestream.descriptors). It must give 128-D descriptors calibrated like dlib's (see models.faces).")
    descriptor_options: dict[str, str | int | float | bool] = Field(default_factory=dict, description="Options of the descriptor plug-in, validated by its config when the models load (dlib_resnet's: max_batch).")
    detector_threshold: float = Field(0.5, gt=0, lt=1, description="CenterFace heatmap score threshold.")
    detector_nms_iou: float = Field(0.3, gt=0, lt=1, description="IoU above which overlapping detections are suppressed.")
    detector_max_side: int = Field(512, ge=64, description="Frames are resized so that their longer side is at most this before detection, unless that would shrink a face of detector_min_face pixels below CenterFace's 16 px. 512: a 640x360 frame is detected at 512x288 (a multiple of 32, no padding: 60 % of the pixels of 640x384), the same cast found on the clip as at 640 (BENCHMARKS.md, Detection input resolution); 1280x720 and larger frames are governed by detector_min_face (720p at 640x360, 1080p at 960x540).")
    detector_min_face: int = Field(32, ge=0, description="Smallest face (pixels wide, in the frame as published) detection must find: a frame is never downscaled so far that such a face falls under 16 px in the detector's input (0: detector_max_side alone decides).")
    detector_precision: Literal["auto", "float32", "int8"] = Field("auto", description="CenterFace weights: int8 (static QDQ quantisation calibrated on real frames, stem and output heads kept float, see models/quantize.py; two builds, each where it was calibrated: at the clip's scale where a detector_min_face face stays at least 20 px wide in the detector's input (a 640x360 frame: about 1.5x the frames/s of float, same detections on the shared photos, the clip's cast found at 8 and 30 frames/s), and with small faces added where it is smaller (720p and 1080p frames: the small-faces crowd found as float finds it, 0.7 of float's CPU time)), float32, or auto (the default): int8, except float for photos (enrolment, search, verification) whose detector_min_face face would be under 20 px in the input (large portraits: their landmarks set a dossier's descriptor, and the small-face build moved the clip's hardest identity under the match threshold). Guards in tests/unit/test_models_int8.py and tests/integration/test_small_faces.py. TensorRT always builds from float.")
    descriptor_precision: Literal["float32", "int8"] = Field("int8", description="dlib ResNet weights: int8 (static QDQ quantisation calibrated on real chips; cosine to float >= 0.995) or the float model. TensorRT always builds from float.")
    max_batch: int = Field(32, ge=1, description="Most faces per descriptor / attribute inference call (and the TensorRT profile's maximum batch).")
    tensorrt_fp16: bool = Field(True, description="Build TensorRT engines in FP16 where the GPU supports it.")
    attributes: list[str] = Field(default_factory=lambda: ["emotion", "age_gender"], description="Attribute plug-ins to run on each posted face (names in models.attributes' registry: emotion, age_gender, mask, or your own), each enabled on its own as in FindFace and LUNA. `mask` (FaceMasque's VGG16) is opt-in: ~50-110 ms per face on 2 CPU cores, against ~3 ms for emotion and age_gender together, and it runs on the alert path (a live camera's first face waits for it), so add it (`[\"emotion\", \"age_gender\", \"mask\"]`) where mask conditions matter; without it events carry `mask` null and a `mask=` filter or rule matches nothing. Costs: BENCHMARKS.md (face attributes; live camera latency).")
    liveness_model: str = Field("faceplugin", description="Liveness plug-in: faceplugin (shipped; training data undisclosed) or a facestream.liveness entry point.")
    liveness_threshold: float = Field(0.4, ge=0, le=1, description="Average live probability at or above which a face is alive (calibration in BENCHMARKS.md).")
    event_liveness: bool = Field(False, description="Score liveness on every posted face and attach it to its event (costs ~7-12 ms per face).")
