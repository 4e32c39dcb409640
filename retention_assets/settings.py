"""The environment variables a deployment sets, read in one place."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Settings:
    data_dir: str
    db_schema: str
    pgdata: str
    settle_seconds: float = 5.0
    sensor_interval_seconds: int = 15

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            data_dir=os.environ.get("RETENTION_DATA_DIR", "data"),
            db_schema=os.environ.get("RETENTION_DB_SCHEMA", "public"),
            pgdata=os.environ.get("RETENTION_PGDATA", ".retention/pgdata"),
            settle_seconds=float(os.environ.get("RETENTION_SETTLE_SECONDS", "5")),
            sensor_interval_seconds=int(os.environ.get("RETENTION_SENSOR_INTERVAL", "15")),
        )
