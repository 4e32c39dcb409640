"""Dagster resource for the PostgreSQL database that holds the asset tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg2
import psycopg2.extensions
from pydantic import Field, PrivateAttr

from retention_assets.storage.database import (
    DatabaseUnavailable,
    connect,
    is_transient,
    redact,
    resolve_database_url,
)


def final_failure(exc: Exception) -> dg.Failure:
    """``exc`` as a Failure that Dagster's RetryPolicy does not retry: the step fails at once
    and shows the reason, not "Exceeded max_retries of 3" after identical attempts."""
    reason = str(exc) if isinstance(exc, DatabaseUnavailable) else f"{type(exc).__name__}: {exc}"
    return dg.Failure(description=reason.strip(), allow_retries=False)


class PostgresResource(dg.ConfigurableResource):
    """The database and schema the asset tables live in.

    Without ``database_url`` it falls back to env/.env ``DATABASE_URL`` and then to the embedded
    server, so a fresh checkout runs with no configuration.
    """

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means env/.env DATABASE_URL, else embedded PostgreSQL.",
    )
    db_schema: str = Field(default="public", description="Schema holding one table per asset.")
    pgdata: str = Field(
        default=".retention/pgdata", description="Data folder of the embedded PostgreSQL server."
    )

    _resolved_url: str | None = PrivateAttr(default=None)

    def url(self) -> str:
        """The database URL, resolved once per resource instance (may start the embedded server)."""
        if self._resolved_url is None:
            self._resolved_url = resolve_database_url(self.database_url, self.pgdata)
        return self._resolved_url

    @contextmanager
    def connect(self) -> Iterator[psycopg2.extensions.connection]:
        """A fresh connection, closed on exit. A database error that retrying cannot fix (see
        is_transient: server down, disk full, 1601 columns, ...) leaves as final_failure: the IO
        managers use this too, and fail_fast does not guard them. Other errors pass unchanged."""
        try:
            conn = connect(self.url())
            try:
                yield conn
            finally:
                conn.close()
        except (psycopg2.Error, DatabaseUnavailable) as exc:
            if is_transient(exc):
                raise
            raise final_failure(exc) from exc

    def describe(self) -> str:
        """Where the tables are, safe to print (the password is redacted)."""
        return f"{redact(self.url())} (schema {self.db_schema})"
