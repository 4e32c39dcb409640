"""The environment variables a deployment sets, read in one place."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from .storage.database import configured_database_url

T = TypeVar("T")

EXECUTORS = ("in_process", "celery")
# What the Celery executor and its workers (deploy/celery.yaml) read, at run time.
CELERY_BROKER, CELERY_BACKEND = "RETENTION_CELERY_BROKER", "RETENTION_CELERY_BACKEND"

_MAX_IDENTIFIER_BYTES = 63  # PostgreSQL's NAMEDATALEN - 1; longer names are silently truncated


class SettingsError(ValueError):
    """An environment variable holds a value the code location cannot use; the message names
    the variable, its value and what is expected, so it can be shown without a traceback."""


@dataclass(frozen=True)
class Settings:
    data_dir: str
    db_schema: str
    pgdata: str
    settle_seconds: float = 5.0
    sensor_interval_seconds: int = 15
    executor: str = "in_process"

    @classmethod
    def from_env(cls) -> Settings:
        """Read the RETENTION_* variables (unset or empty: the default); raises SettingsError
        for a value that would otherwise fail later, far from its cause."""
        settings = cls(
            data_dir=_env("RETENTION_DATA_DIR", "data", str, "a folder"),
            db_schema=_env(
                "RETENTION_DB_SCHEMA",
                "public",
                _schema_name,
                f"a schema name of at most {_MAX_IDENTIFIER_BYTES} bytes, without NUL",
            ),
            pgdata=_env("RETENTION_PGDATA", ".retention/pgdata", str, "a folder"),
            settle_seconds=_env(
                "RETENTION_SETTLE_SECONDS", "5", _seconds, "a number of seconds >= 0"
            ),
            sensor_interval_seconds=_env(
                "RETENTION_SENSOR_INTERVAL", "15", _whole_seconds, "a whole number of seconds >= 1"
            ),
            executor=_env("RETENTION_EXECUTOR", "in_process", _executor, " or ".join(EXECUTORS)),
        )
        if settings.executor == "celery":
            _require_celery_setup()
        return settings


def _env(name: str, default: str, parse: Callable[[str], T], expected: str) -> T:
    raw = os.environ.get(name) or default
    try:
        return parse(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected {expected}") from None


def _seconds(raw: str) -> float:
    value = float(raw)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError
    return value


def _whole_seconds(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError
    return value


def _executor(raw: str) -> str:
    if raw not in EXECUTORS:
        raise ValueError
    return raw


def _require_celery_setup() -> None:
    """Celery workers are other processes, maybe on other machines: they need the broker, the
    result backend and a database server every one of them reaches."""
    needed = {
        CELERY_BROKER: "the broker, e.g. pyamqp://guest:guest@127.0.0.1:5672//",
        CELERY_BACKEND: "the result backend, e.g. rpc://",
    }
    missing = [f"{name} ({what})" for name, what in needed.items() if not os.environ.get(name)]
    if configured_database_url() is None:
        missing.append(
            "DATABASE_URL (a PostgreSQL server every worker reaches: the embedded server "
            "is private to the processes of one machine)"
        )
    if missing:
        raise SettingsError(f"RETENTION_EXECUTOR='celery' needs {'; '.join(missing)}")


def _schema_name(raw: str) -> str:
    if "\x00" in raw or len(raw.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise ValueError
    return raw
