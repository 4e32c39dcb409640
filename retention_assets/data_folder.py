"""The folder the CSV exports are dropped into, as a Dagster resource."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from .ingest.loading import source_files


class DataFolder(dg.ConfigurableResource):
    """Where `NAME.csv` and `NAME_*.csv` drops land (env RETENTION_DATA_DIR, default data/)."""

    path: str = "data"
    settle_seconds: float = 5.0  # the sensor ignores a drop modified more recently than this

    def files(self, source: str) -> list[Path]:
        return source_files(Path(self.path), source)
