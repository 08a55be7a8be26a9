"""docker-compose.yml describes the topology the process tests run (no Docker engine here):
its long-running services restart on failure and the one-shot migration does not."""

from __future__ import annotations

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def test_long_running_services_restart_and_the_migration_runs_once() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    for name in ("postgres", "redis", "api", "worker"):
        assert services[name].get("restart") == "unless-stopped", name
    assert services["migrate"]["restart"] == "no"
    for name in ("api", "worker"):  # both wait for the schema and the queue
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
    assert services["api"]["environment"]["CURATOR_EMBEDDED_WORKER"] == "false"
