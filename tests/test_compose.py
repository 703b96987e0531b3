"""compose.yaml and its nginx config, checked against the real settings and command line.

Docker does not run on the build machines, so this is what can be proved here: every role
service runs a real ``pricestream`` command, its environment loads into valid settings on Kafka
and MongoDB, and the topology is the documented one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pricestream.cli import build_parser
from pricestream.roles import ROLES
from pricestream.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def test_every_role_is_a_service_with_health_checks_and_restarts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "mongo", "nginx", *ROLES} <= set(services)
    for name in ("kafka", "mongo", "nginx", *ROLES):
        assert "healthcheck" in services[name], name
        assert services[name]["restart"] == "unless-stopped", name
    assert services["stream"]["deploy"]["replicas"] == 2
    assert services["web"]["deploy"]["replicas"] == 2
    assert set(compose["volumes"]) == {"kafka-data", "mongo-data"}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_service_runs_its_command_on_kafka_and_mongodb(
    compose: dict[str, Any], role: str
) -> None:
    service = compose["services"][role]
    args = build_parser().parse_args(service["command"])
    assert args.command == role
    environ = {k: str(v) for k, v in service["environment"].items()}
    settings = Settings.load(None, environ)  # raises on any unknown or invalid variable
    assert settings.bus.kind == "kafka"
    assert settings.bus.bootstrap == "kafka:9092"
    assert settings.storage.kind == "mongo"
    assert settings.server.host == "0.0.0.0"
    assert "readyz" in " ".join(service["healthcheck"]["test"])


def test_nginx_balances_web_by_least_connections_and_upgrades_websockets(
    compose: dict[str, Any],
) -> None:
    mount = compose["services"]["nginx"]["volumes"][0].split(":")[0]
    conf = (ROOT / mount).read_text()
    assert "least_conn;" in conf
    assert "server web:8080" in conf
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_buffering off;" in conf
