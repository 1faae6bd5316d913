"""The scaled-out shape (compose.scale.yaml over compose.yaml) is consistent: every role it
runs is one the image's entry point knows, the Dagster instance it installs loads (queued runs,
one container per run, on compose's network and volume), the workspace points at the code
server, and every process that touches the landing zone is told where it is.

No image is built or started here (base images cannot be pulled on this machine): what the
containers do at run time is not verified by this test."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import dagster as dg
import yaml

ROOT = Path(__file__).resolve().parents[1]
LANDING = {
    "LANDING_URI",
    "LANDING_S3_ENDPOINT_URL",
    "LANDING_S3_REGION",
    "LANDING_S3_ACCESS_KEY_ID",
    "LANDING_S3_SECRET_ACCESS_KEY",
}


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def merged_services() -> tuple[str, dict[str, dict]]:
    """The services as `compose -f compose.yaml -f compose.scale.yaml` merges them (mappings
    merged key by key, lists and scalars of the later file win), and the project name."""
    base, scale = _load("compose.yaml"), _load("compose.scale.yaml")
    services = {name: dict(service) for name, service in base["services"].items()}
    for name, override in scale["services"].items():
        service = services.setdefault(name, {})
        for key, value in override.items():
            if isinstance(value, dict) and isinstance(service.get(key), dict):
                service[key] = {**service[key], **value}
            else:
                service[key] = value
    return scale["name"], services


def entrypoint_roles() -> set[str]:
    script = (ROOT / "deploy" / "entrypoint.sh").read_text()
    return set(re.findall(r"^  ([a-z-]+)\)$", script, flags=re.MULTILINE))


def test_every_role_of_the_scaled_out_shape_is_one_the_image_runs() -> None:
    _, services = merged_services()
    roles = entrypoint_roles()
    assert {"code-server", "spark-master", "spark-worker", "objectstore"} <= roles
    scale = _load("compose.scale.yaml")["services"]
    for name in ("objectstore", "code-server", "spark-master", "spark-worker", "webserver"):
        assert name in scale, name
    for name, service in services.items():
        command = service.get("command")
        if command and command[0] != "python":
            assert command[0] in roles, (name, command)
    # The scaled-out services run the image built with the scale and Spark groups and Java.
    for name in scale:
        if name != "dashboard":
            assert services[name]["image"] == "loyalty-flights-scale:latest", name
    args = services["code-server"]["build"]["args"]
    assert "--group scale" in args["UV_SYNC_ARGS"] and "--group spark" in args["UV_SYNC_ARGS"]
    assert "openjdk-17-jre-headless" in args["EXTRA_APT_PACKAGES"]


def test_every_process_touching_the_landing_zone_is_told_where_it_is() -> None:
    _, services = merged_services()
    for name in ("pipeline", "daemon", "code-server", "dashboard", "objectstore-bucket"):
        assert set(services[name]["environment"]) >= LANDING, name
    # The daemon hands them on to each run's container.
    launcher = _load("deploy/dagster.scale.yaml")["run_launcher"]["config"]
    daemon = set(services["daemon"]["environment"])
    assert set(launcher["env_vars"]) >= LANDING
    assert set(launcher["env_vars"]) - {"DATA_DIR", "DAGSTER_HOME"} <= daemon
    # Every tenant secret compose.yaml gives its ingestion reaches the run containers too.
    assert set(_load("compose.yaml")["x-tenant-secrets"]) <= set(launcher["env_vars"])


def test_the_scaled_out_dagster_instance_loads_and_queues_runs_into_containers(
    tmp_path: Path,
) -> None:
    project, services = merged_services()
    shutil.copyfile(ROOT / "deploy" / "dagster.scale.yaml", tmp_path / "dagster.yaml")
    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert type(instance.run_launcher).__name__ == "DockerRunLauncher"
    finally:
        instance.dispose()
    launcher = _load("deploy/dagster.scale.yaml")["run_launcher"]["config"]
    assert launcher["network"] == f"{project}_default"
    assert launcher["container_kwargs"]["volumes"] == [f"{project}_data:/app/data"]
    for name in ("webserver", "daemon", "code-server"):
        environment = services[name]["environment"]
        assert environment["DAGSTER_INSTANCE_YAML"] == "/app/deploy/dagster.scale.yaml"
        assert (ROOT / environment["DAGSTER_WORKSPACE"]).exists()
    # The workspace loads the code location from the code server's container and port.
    (server,) = _load("workspace.scale.yaml")["load_from"]
    assert server["grpc_server"]["host"] in services
    assert str(server["grpc_server"]["port"]) in (ROOT / "deploy" / "entrypoint.sh").read_text()
