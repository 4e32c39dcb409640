"""Reaching PostgreSQL and moving pandas frames / pickled objects in and out of it."""

from retention_assets.storage.database import (
    DatabaseUnavailable,
    connect,
    normalise_url,
    redact,
    resolve_database_url,
)
from retention_assets.storage.tables import (
    TableNotFoundError,
    count_rows,
    read_pickle,
    read_table,
    replace_rows,
    upsert_rows,
    write_pickle,
    write_table,
)

__all__ = [
    "DatabaseUnavailable",
    "TableNotFoundError",
    "connect",
    "count_rows",
    "normalise_url",
    "read_pickle",
    "read_table",
    "redact",
    "replace_rows",
    "resolve_database_url",
    "upsert_rows",
    "write_pickle",
    "write_table",
]
