"""Shared fixtures: a throw-away database on a real PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg2.extensions
import pytest
from sqlalchemy.engine import make_url

from retention_assets.storage.database import DatabaseUnavailable, connect, redact


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    return os.environ.get(
        "RETENTION_TEST_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
    )


@pytest.fixture(scope="session")
def database_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh database for the session, dropped afterwards (even if tests left connections)."""
    try:
        admin = connect(pg_admin_url)
    except DatabaseUnavailable as exc:
        reason = f"PostgreSQL for tests unavailable ({redact(pg_admin_url)}): {exc}"
        if os.environ.get("RETENTION_REQUIRE_DB") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    name = f"retention_test_{uuid.uuid4().hex[:12]}"
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    url = make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture
def conn(database_url: str) -> Iterator[psycopg2.extensions.connection]:
    """Autocommit, so ad-hoc queries in tests never leave a transaction open."""
    connection = connect(database_url)
    connection.autocommit = True
    try:
        yield connection
    finally:
        connection.close()
