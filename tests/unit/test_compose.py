"""The docker-compose deployment: valid Compose, one service per role, scaling and GPU variants declared."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

yaml = pytest.importorskip("yaml", reason="PyYAML is in the test extra: pip install -e '.[test]'")

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DASHBOARD = ROOT / "ops" / "grafana" / "facestream.json"
REQUIRED_ENV = (
    "FACESTREAM_BOOTSTRAP_SERVERS", "FACESTREAM_STORE_SQL_URL", "FACESTREAM_STORE_MILVUS_URI",
    "FACESTREAM_STORE_MEDIA_S3_URL", "FACESTREAM_STORE_MEDIA_S3_ENDPOINT", "FACESTREAM_DATA_DIR",
)


def _roles() -> list[str]:
    from pipeline.roles import ROLES

    return list(ROLES)


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_file_matches_the_compose_spec_schema() -> None:
    """The Compose Specification's JSON schema (as packaged, with its licence, by the ``check-jsonschema``
    test dependency) accepts the file: a misspelt key, a wrong type or a bad healthcheck fails here, in CI,
    where no docker-compose binary exists."""
    jsonschema = pytest.importorskip("jsonschema")
    vendor = pytest.importorskip("check_jsonschema.builtin_schemas.vendor",
                                 reason="check-jsonschema is in the test extra: pip install -e '.[test]'")
    from importlib.resources import files

    schema = json.loads(files(vendor).joinpath("compose-spec.json").read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(yaml.safe_load(COMPOSE.read_text()))]
    assert errors == []
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["milvus"]["healthchek"] = broken["services"]["milvus"].pop("healthcheck")
    assert any("healthchek" in e.message for e in validator.iter_errors(broken)), "the schema checks nothing"


def test_compose_config_validates() -> None:
    """Debian's docker-compose validates against the Compose schema without a Docker engine (where it is
    installed; the schema test above runs everywhere)."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose); YAML checks still run")
    done = subprocess.run([binary, "-f", str(COMPOSE), "config", "--quiet"], check=False, cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _environments(compose: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(name, service.get("environment") or {}) for name, service in compose["services"].items()]


def test_every_facestream_variable_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each FACESTREAM_* name the compose file (and the Dockerfile) sets is a leaf of the settings tree, and
    the value given there validates: a misspelt variable would be silently ignored by the container."""
    from ops.gen_config_doc import env_name
    from pipeline.settings import Settings, setting_paths

    known = {env_name(path): path for path, _field in setting_paths()}
    given: dict[str, str] = {}
    for service, env in _environments(yaml.safe_load(COMPOSE.read_text())):
        for name, value in env.items():
            if name.startswith("FACESTREAM_"):
                assert name in known, f"{service}: {name} is not a setting (docs/configuration.md)"
                given[name] = str(value)
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        for word in line.replace("\\", " ").split():
            if word.startswith("FACESTREAM_") and "=" in word:
                name, value = word.split("=", 1)
                assert name in known, f"Dockerfile: {name} is not a setting"
                given[name] = value
    assert len(given) >= 10
    for name, value in given.items():
        value = value.replace("${FACESTREAM_ADMIN_PASSWORD:-change-me}", "a-long-operator-password")
        monkeypatch.setenv(name, value)
        node: Any = Settings()
        for part in known[name]:
            node = getattr(node, part)
        shown = node.get_secret_value() if hasattr(node, "get_secret_value") else node
        assert str(shown) == value, f"{name}={value} read as {shown!r}"
        monkeypatch.delenv(name)


def test_kraft_cluster_id_is_16_bytes(services: dict[str, Any]) -> None:
    """Kafka formats its KRaft storage only with base64url of exactly 16 bytes (22 characters)."""
    cluster_id = services["kafka"]["environment"]["CLUSTER_ID"]
    assert len(cluster_id) == 22, cluster_id
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_plans_volume_does_not_hide_the_models(services: dict[str, Any]) -> None:
    """The TensorRT plans volume sits below the models folder; mounting it on the folder would hide the
    ONNX models prepared in the image."""
    for name in ("detector-gpu", "extractor-gpu"):
        targets = [v.split(":")[1] for v in services[name]["volumes"]]
        assert "/opt/facestream/models" not in targets, name
        assert "/opt/facestream/models/tensorrt" in targets, name


def test_healthchecks_use_binaries_of_every_architecture(services: dict[str, Any]) -> None:
    """MinIO's arm64 image has no curl; its own client `mc` is in the image on every architecture. Milvus'
    release images are built from its ubuntu22.04 Dockerfile, which apt-installs curl for every target
    architecture (and uses it to fetch tini); its liveness endpoint is /healthz on the metrics port 9091, the
    check Milvus' own compose file runs."""
    assert services["minio"]["healthcheck"]["test"][:2] == ["CMD", "mc"]
    assert services["milvus"]["image"].startswith("milvusdb/milvus:v2.")
    assert services["milvus"]["healthcheck"]["test"] == ["CMD", "curl", "-f", "http://localhost:9091/healthz"]


def test_dockerfile_installs_dependencies_before_copying_sources() -> None:
    for stage in (ROOT / "Dockerfile").read_text().split("\nFROM ")[1:]:
        lines = stage.splitlines()
        first_source = next(i for i, line in enumerate(lines) if line.startswith("COPY pipeline"))
        install = next(i for i, line in enumerate(lines) if "constraints.txt '." in line)
        assert install < first_source, lines[0]


def test_every_role_has_a_service(services: dict[str, Any]) -> None:
    for role in _roles():
        assert role in services, f"docker-compose.yml has no service for role {role!r}"
        service = services[role]
        assert service["command"][:2] == ["run", role]
        assert service["command"][2:] == ["--bootstrap", "kafka:9092"]
        env = service["environment"]
        for name in REQUIRED_ENV:
            assert env.get(name), f"{role}: {name} unset"
        assert "healthcheck" in service, role
        assert service["deploy"]["replicas"] >= 1


def test_infrastructure(services: dict[str, Any]) -> None:
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    assert services["milvus"]["command"] == ["milvus", "run", "standalone"]
    assert {"etcd", "minio", "postgres"} <= set(services)
    for name in ("kafka", "etcd", "minio", "milvus", "postgres"):
        assert "healthcheck" in services[name], name


def test_scalable_stages_have_replicas(services: dict[str, Any]) -> None:
    from pipeline.roles import ROLES

    assert any(services[name]["deploy"]["replicas"] > 1 for name, spec in ROLES.items() if spec.scalable)
    for name, spec in ROLES.items():
        if not spec.scalable:
            assert services[name]["deploy"]["replicas"] == 1, name


def test_gpu_variants(services: dict[str, Any]) -> None:
    for role in ("detector", "extractor"):
        service = services[f"{role}-gpu"]
        assert service["profiles"] == ["gpu"]
        assert service["command"][:2] == ["run", role]
        assert service["environment"]["FACESTREAM_MODELS_ENGINE"] == "tensorrt"
        devices = service["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["capabilities"] == ["gpu"]


def test_dashboard_covers_every_metric() -> None:
    """The Grafana dashboard queries every metric the pipeline exports."""
    from pipeline import metrics

    exprs = " ".join(
        target["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for target in panel.get("targets", [])
    )
    names = [m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)]
    assert names
    missing = [n for n in names if n not in exprs]
    assert not missing, f"metrics absent from ops/grafana/facestream.json: {missing}"
