"""The environment variables a deployment sets, read in one place."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

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

    @classmethod
    def from_env(cls) -> Settings:
        """Read the RETENTION_* variables (unset or empty: the default); raises SettingsError
        for a value that would otherwise fail later, far from its cause."""
        return cls(
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
        )


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


def _schema_name(raw: str) -> str:
    if "\x00" in raw or len(raw.encode("utf-8")) > _MAX_IDENTIFIER_BYTES:
        raise ValueError
    return raw
