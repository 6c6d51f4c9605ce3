"""The docker-compose deployment: valid Compose, one service per role, scaling and GPU variants declared."""

from __future__ import annotations

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


def test_compose_config_validates() -> None:
    """Debian's docker-compose validates against the Compose schema without a Docker engine."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose); YAML checks still run")
    done = subprocess.run([binary, "-f", str(COMPOSE), "config", "--quiet"], check=False, cwd=ROOT,
                          capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


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
