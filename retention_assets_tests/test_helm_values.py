"""deploy/helm/values.yaml: keys the official Dagster chart accepts, environment the code reads.

No cluster or chart is reachable here, so the file is checked as far as this machine allows:
the keys it sets against the chart's values schema (the key names and enumerations of the
chart's `schema` package for dagster 1.13, written out below for the parts this file fills),
and its settings against the code location (module, environment variables, data folder) and
the docker-compose deployment's instance (one run at a time).
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml

from retention_assets.settings import EXECUTORS

REPO_ROOT = Path(__file__).resolve().parents[1]
VALUES = REPO_ROOT / "deploy" / "helm" / "values.yaml"


def _closed(properties: dict, required: tuple[str, ...] = ()) -> dict:
    """An object schema that refuses keys the chart does not know."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_ANY = {}
_ENV_LIST = {"type": "array", "items": _closed({"name": {"type": "string"}}, ("name",))}
_ENV_VARS = {
    "type": "array",
    "items": _closed({"name": {"type": "string"}, "value": {"type": "string"}}, ("name",)),
}
_IMAGE = _closed(
    {
        "repository": {"type": "string"},
        "tag": {"type": "string"},
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
    },
    ("repository", "tag"),
)
_USER_DEPLOYMENT = _closed(
    dict.fromkeys(
        [
            "codeServerArgs",
            "includeConfigInLaunchedRuns",
            "envConfigMaps",
            "annotations",
            "nodeSelector",
            "affinity",
            "tolerations",
            "podSecurityContext",
            "securityContext",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "labels",
            "volumeMounts",
            "volumes",
            "schedulerName",
        ],
        _ANY,
    )
    | {
        "name": {"type": "string"},
        "image": _IMAGE,
        "port": {"type": "integer"},
        "dagsterApiGrpcArgs": {"type": "array", "items": {"type": "string"}},
        "env": {"anyOf": [_ENV_VARS, {"type": "object"}]},
        "envSecrets": _ENV_LIST,
    },
    ("name", "image", "port"),
)
_K8S_RUN_LAUNCHER = _closed(
    dict.fromkeys(
        [
            "image",
            "imagePullPolicy",
            "jobNamespace",
            "loadInclusterConfig",
            "kubeconfigFile",
            "envConfigMaps",
            "envVars",
            "volumeMounts",
            "volumes",
            "labels",
            "failPodOnRunFailure",
            "resources",
            "schedulerName",
            "securityContext",
            "runK8sConfig",
        ],
        _ANY,
    )
    | {"envSecrets": _ENV_LIST}
)
_RUN_COORDINATOR = _closed(
    {
        "enabled": {"type": "boolean"},
        "type": {"enum": ["QueuedRunCoordinator", "CustomRunCoordinator"]},
        "config": _closed(
            {
                "queuedRunCoordinator": _closed(
                    dict.fromkeys(
                        [
                            "maxConcurrentRuns",
                            "tagConcurrencyLimits",
                            "dequeueIntervalSeconds",
                            "dequeueNumWorkers",
                            "dequeueUseThreads",
                        ],
                        _ANY,
                    )
                ),
                "customRunCoordinator": _ANY,
            }
        ),
    },
    ("enabled", "type", "config"),
)
_DAEMON = _closed(
    dict.fromkeys(
        [
            "schedulerName",
            "volumeMounts",
            "volumes",
            "image",
            "heartbeatTolerance",
            "env",
            "envConfigMaps",
            "envSecrets",
            "deploymentLabels",
            "labels",
            "nodeSelector",
            "affinity",
            "tolerations",
            "podSecurityContext",
            "securityContext",
            "resources",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "annotations",
            "runMonitoring",
            "runRetries",
            "sensors",
            "schedules",
        ],
        _ANY,
    )
    | {"enabled": {"type": "boolean"}, "runCoordinator": _RUN_COORDINATOR}
)
_POSTGRESQL = _closed(
    {
        "postgresqlScheme": {"type": "string"},
        "image": _ANY,
        "enabled": {"type": "boolean"},
        "postgresqlHost": {"type": "string"},
        "postgresqlUsername": {"type": "string"},
        "postgresqlPassword": {"type": "string"},
        "postgresqlDatabase": {"type": "string"},
        "postgresqlParams": {"type": "object"},
        "service": _closed({"port": {"type": "integer"}}),
    }
)
SCHEMA = _closed(
    dict.fromkeys(
        [
            "global",
            "dagsterWebserver",
            "rabbitmq",
            "redis",
            "flower",
            "ingress",
            "imagePullSecrets",
            "computeLogManager",
            "scheduler",
            "pythonLogs",
            "busybox",
            "migrate",
            "telemetry",
            "serviceAccount",
            "retention",
            "concurrency",
            "additionalInstanceConfig",
            "generateCeleryConfigSecret",
        ],
        _ANY,
    )
    | {
        "dagster-user-deployments": _closed(
            {
                "enabled": {"type": "boolean"},
                "enableSubchart": {"type": "boolean"},
                "imagePullSecrets": _ANY,
                "deployments": {"type": "array", "minItems": 1, "items": _USER_DEPLOYMENT},
            }
        ),
        "postgresql": _POSTGRESQL,
        "generatePostgresqlPasswordSecret": {"type": "boolean"},
        "runLauncher": _closed(
            {
                "type": {"enum": ["CeleryK8sRunLauncher", "K8sRunLauncher", "CustomRunLauncher"]},
                "config": _closed(
                    {
                        "k8sRunLauncher": _K8S_RUN_LAUNCHER,
                        "celeryK8sRunLauncher": _ANY,
                        "customRunLauncher": _ANY,
                    }
                ),
            },
            ("type", "config"),
        ),
        "dagsterDaemon": _DAEMON,
    }
)


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


@pytest.fixture(scope="module")
def deployment(values) -> dict:
    (only,) = values["dagster-user-deployments"]["deployments"]
    return only


def test_keys_are_the_charts(values):
    jsonschema.validate(values, SCHEMA)
    launcher = values["runLauncher"]
    # The chart reads the config block named after the launcher type.
    assert launcher["type"] == "K8sRunLauncher"
    assert set(launcher["config"]) == {"k8sRunLauncher"}


def test_schema_refuses_a_misspelt_key(values):
    """The schema above is closed where this file writes: a typo would not pass silently."""
    broken = yaml.safe_load(VALUES.read_text())
    broken["runLauncher"]["config"]["k8sRunLauncher"]["envSecret"] = []
    with pytest.raises(jsonschema.ValidationError, match="envSecret"):
        jsonschema.validate(broken, SCHEMA)


def test_code_location_is_the_package(deployment):
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert deployment["dagsterApiGrpcArgs"] == ["-m", pyproject["tool"]["dagster"]["module_name"]]


def test_environment_is_what_the_code_reads(deployment):
    env = {item["name"]: item["value"] for item in deployment["env"]}
    settings_source = (REPO_ROOT / "retention_assets" / "settings.py").read_text()
    for name in env:
        assert f'"{name}"' in settings_source, f"{name} is not read by retention_assets.settings"
    assert env["RETENTION_EXECUTOR"] in EXECUTORS


def test_runs_see_what_the_code_location_sees(values, deployment):
    """Each run is a pod of its own: the same secret and the same drops folder as the code
    location (whose sensor decides what a run loads)."""
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert launcher["envSecrets"] == deployment["envSecrets"]
    assert launcher["volumes"] == deployment["volumes"]
    assert launcher["volumeMounts"] == deployment["volumeMounts"]
    data_dir = {item["name"]: item["value"] for item in deployment["env"]}["RETENTION_DATA_DIR"]
    assert [m["mountPath"] for m in deployment["volumeMounts"]] == [data_dir]


def test_one_run_at_a_time_as_in_the_compose_deployment(values):
    instance = yaml.safe_load((REPO_ROOT / "deploy" / "dagster.yaml").read_text())
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
