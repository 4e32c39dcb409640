"""Source tables made of per-file slices, with the cross-row rules decided in PostgreSQL.

Each source `S` is kept in two tables: `S` holds the accepted rows, `_held_S` the rows that
passed every per-row check but lose to another row: a later occurrence of an id ("first
occurrence wins", in file-name then line order) or a reference to an id the referenced source
does not hold. Both carry `_file` and `_line`, so a drop file's rows are the slice
`_file = <name>`. Loading, replacing or removing one file touches only the ids of that slice
(and, for customers / packages, the rows that reference the ids that came or went): the work
grows with the drop, never with the history, and the result is the same whatever order the
files arrived in.

The event feeds also keep per-customer summaries (storage.summaries), updated by triggers in
the same transactions.

`rejected_rows` is a view: the per-row rejects each load stored (`_row_rejects`) and the held
rows with their reason. `loaded_files` is the manifest: which file of which source is loaded,
with the size and modification time it had, so any process can tell what changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import psycopg2.errors
from psycopg2 import sql

from ..core.sources import FILE_COLUMN, LINE_COLUMN, SOURCES, SourceSpec, spec_template
from .summaries import (
    SUMMARIES,
    Summary,
    drop_summary,
    ensure_summary,
    rebuild_summary,
    set_triggers,
    summary_kept,
)
from .tables import (
    Connection,
    Cursor,
    _Column,
    _columns_for,
    _copy_in,
    _ensure_schema,
    _transaction,
    column_types,
    table_exists,
)

FILE, LINE, REASON = FILE_COLUMN, LINE_COLUMN, "_reason"
MANIFEST = "loaded_files"
REJECTS = "rejected_rows"
ROW_REJECTS = "_row_rejects"
# First key of the advisory lock all source loads share: one writer of source tables at a time.
_LOCK_NAMESPACE = 0x52544E02

_MANIFEST_DDL = sql.SQL(
    "source text NOT NULL, file text NOT NULL, size bigint NOT NULL, mtime_ns bigint NOT NULL, "
    "columns text[] NOT NULL, rows_read bigint NOT NULL, rows_rejected bigint NOT NULL, "
    "loaded_at timestamptz NOT NULL DEFAULT now(), run_id text, PRIMARY KEY (source, file)"
)
_ROW_REJECTS_DDL = sql.SQL(
    "source text NOT NULL, file text NOT NULL, line bigint NOT NULL, reason text NOT NULL, "
    "raw text NOT NULL, run_id text"
)


@dataclass(frozen=True)
class LoadedFile:
    """One row of the manifest."""

    source: str
    file: str
    size: int
    mtime_ns: int
    columns: tuple[str, ...]
    rows_read: int
    rows_rejected: int


def held_table(source: str) -> str:
    return f"_held_{source}"


def source_columns(template: pd.DataFrame, spec: SourceSpec) -> list[_Column]:
    """The PostgreSQL columns a source's rows are stored in (money as numeric)."""
    money = [c.name for c in spec.columns if c.kind == "money"]
    return _columns_for(template, money)


def _ident(schema: str, table: str) -> sql.Identifier:
    return sql.Identifier(schema, table)


def _names(names: Iterable[str]) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, names))


def lock_sources(cur: Cursor) -> None:
    """Serialise every change to source tables until commit (loads of different sources too:
    a customers load re-decides the references of transactions and attendance)."""
    cur.execute("SELECT pg_advisory_xact_lock(%s, 0)", [_LOCK_NAMESPACE])


def ensure_store(cur: Cursor, schema: str) -> None:
    """The manifest and the per-row rejects."""
    _ensure_schema(cur, schema)
    cur.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            _ident(schema, MANIFEST), _MANIFEST_DDL
        )
    )
    cur.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(
            _ident(schema, ROW_REJECTS), _ROW_REJECTS_DDL
        )
    )
    cur.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (source, file)").format(
            sql.Identifier(f"{ROW_REJECTS}_file"), _ident(schema, ROW_REJECTS)
        )
    )


def ensure_source(cur: Cursor, schema: str, spec: SourceSpec, columns: Sequence[_Column]) -> None:
    """Create `S` and `_held_S` if needed, add any extra column a file brings, and make sure
    the sources `spec` references have a table (empty until their first file)."""
    table, held = _ident(schema, spec.name), _ident(schema, held_table(spec.name))
    if table_exists(cur, schema, spec.name) and FILE not in stored_columns(
        cur, schema, spec.name
    ):  # a whole-table source from before slices: rebuilt from the files
        cur.execute(sql.SQL("DROP TABLE {}").format(table))
    ddl = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(col.name), _column_type(col)) for col in columns
    )
    bookkeeping = sql.SQL('{} text COLLATE "C" NOT NULL, {} bigint NOT NULL').format(
        sql.Identifier(FILE), sql.Identifier(LINE)
    )
    cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, {})").format(table, ddl, bookkeeping))
    cur.execute(
        sql.SQL("CREATE TABLE IF NOT EXISTS {} ({}, {}, {} text)").format(
            held, ddl, bookkeeping, sql.Identifier(REASON)
        )
    )
    for target in (table, held):
        for col in columns:
            cur.execute(
                sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {}").format(
                    target, sql.Identifier(col.name), _column_type(col)
                )
            )
    _create_key_index(cur, schema, spec)
    if spec.name in SUMMARIES:
        ensure_summary(cur, schema, SUMMARIES[spec.name])
    cur.execute(
        sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(f"{held_table(spec.name)}_{spec.id_column}"),
            held,
            sql.Identifier(spec.id_column),
        )
    )
    for col in spec.columns:
        if col.references:
            cur.execute(
                sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                    sql.Identifier(f"{held_table(spec.name)}_{col.name}"),
                    held,
                    sql.Identifier(col.name),
                )
            )
            target = SOURCES[col.references]
            if not table_exists(cur, schema, target.name):
                ensure_source(cur, schema, target, source_columns(spec_template(target), target))


def _column_type(col: _Column) -> sql.Composable:
    """Text compares byte by byte (code-point order, like Python's): ids are matched, grouped
    and indexed several times faster than under a language collation, and nothing here sorts
    text for people."""
    return sql.SQL('text COLLATE "C"' if col.pg_type == "text" else col.pg_type)


def stored_columns(cur: Cursor, schema: str, table: str) -> list[str]:
    return [name for name, _ in column_types(cur, schema, table)]


def manifest(conn: Connection, schema: str) -> dict[tuple[str, str], LoadedFile]:
    """(source, file) -> what was loaded; empty before the first load."""
    with _transaction(conn) as cur:
        if not table_exists(cur, schema, MANIFEST):
            return {}
        cur.execute(
            sql.SQL(
                "SELECT source, file, size, mtime_ns, columns, rows_read, rows_rejected FROM {}"
            ).format(_ident(schema, MANIFEST))
        )
        rows = cur.fetchall()
    return {
        (source, file): LoadedFile(source, file, size, mtime, tuple(cols), read, rejected)
        for source, file, size, mtime, cols, read, rejected in rows
    }


def replace_slice(
    conn: Connection,
    schema: str,
    spec: SourceSpec,
    entry: LoadedFile,
    template: pd.DataFrame,
    fill: Callable[[Cursor, sql.Identifier, list[_Column]], tuple[pd.DataFrame, int]],
    run_id: str | None,
    accept: Callable[[Cursor], None] = lambda cur: None,
) -> tuple[int, int]:
    """Make `entry.file`'s slice of source `spec` exactly the rows `fill` COPYs, in one
    transaction: `fill(cur, target, columns)` streams the file's valid rows (`columns` plus
    _line and _file) into `target` and returns its per-row rejects (line, reason, raw) and
    the number of records read. `accept(cur)` runs last, before the commit, and may raise to
    roll everything back. Returns (records read, rows rejected per row)."""
    columns = source_columns(template, spec)
    with _transaction(conn) as cur:
        _begin(cur, schema)
        ensure_source(cur, schema, spec, columns)
        _temp_ids(cur, "_redo")
        if _holds_nothing(cur, schema, spec):
            rejects, rows_read = _first_load(cur, schema, spec, fill, columns)
            tracked = bool(_referencing(spec))
        elif _holds_only(cur, schema, spec.name, entry.file):
            tracked = _track_presence(cur, schema, spec, entry.file, None)
            cur.execute(
                sql.SQL("TRUNCATE {}, {}").format(
                    _ident(schema, spec.name), _ident(schema, held_table(spec.name))
                )
            )
            rejects, rows_read = _first_load(cur, schema, spec, fill, columns, tracked)
        else:
            rejects, rows_read, tracked = _drop_in(cur, schema, spec, entry.file, fill, columns)
        if tracked:
            _cascade(cur, schema, spec)
        _store_row_rejects(cur, schema, spec.name, entry.file, rejects, run_id)
        _record(cur, schema, entry, rows_read, len(rejects), run_id)
        _drop_unused_columns(cur, schema, spec)
        _end(cur, schema)
        accept(cur)
    return rows_read, len(rejects)


def _holds_nothing(cur: Cursor, schema: str, spec: SourceSpec) -> bool:
    cur.execute(
        sql.SQL("SELECT NOT EXISTS (SELECT 1 FROM {}) AND NOT EXISTS (SELECT 1 FROM {})").format(
            _ident(schema, spec.name), _ident(schema, held_table(spec.name))
        )
    )
    return bool(cur.fetchone()[0])


def _holds_only(cur: Cursor, schema: str, source: str, file: str) -> bool:
    """Whether `file` is the one file stored of `source`: loaded again (a whole export written
    anew each night, often), it is a first load of an emptied source, many times faster than
    deciding each of its rows again against the old ones. The manifest says, not a scan."""
    cur.execute(
        sql.SQL(
            "SELECT bool_and(file = %(file)s) AND bool_or(file = %(file)s) FROM {} "
            "WHERE source = %(source)s"
        ).format(_ident(schema, MANIFEST)),
        {"source": source, "file": file},
    )
    return bool(cur.fetchone()[0])


def _first_load(
    cur: Cursor,
    schema: str,
    spec: SourceSpec,
    fill: Callable,
    columns: list[_Column],
    tracked: bool = False,
) -> tuple[pd.DataFrame, int]:
    """A source's first file (a whole export, often), or its one file loaded again into the
    emptied source: its rows go straight into `S`, written once; then the few that break a
    cross-row rule are decided again. One sorted build of the unique index both checks the
    ids and indexes them. For a referenced source, `_presence` gets every id now stored
    (`tracked`: it holds the ids of the rows before, with their was_present, already)."""
    table = _ident(schema, spec.name)
    cur.execute(sql.SQL("DROP INDEX {}").format(_ident(schema, _key_index(spec))))
    summary = SUMMARIES.get(spec.name)
    if summary:  # one aggregation of the whole file rather than one per block written
        set_triggers(cur, schema, summary, enabled=False)
    rejects, rows_read = fill(cur, table, columns)
    if summary:
        set_triggers(cur, schema, summary, enabled=True)
        rebuild_summary(cur, schema, summary)
    if _referencing(spec):  # what references may now resolve to
        if not tracked:
            _temp_ids(cur, "_presence", ", was_present boolean, is_present boolean")
        cur.execute(
            sql.SQL(
                "INSERT INTO _presence (k, was_present) SELECT DISTINCT {k}, false FROM {t} "
                "ON CONFLICT DO NOTHING"
            ).format(k=sql.Identifier(spec.id_column), t=table)
        )
    if unresolved := _unresolved(schema, spec, table):
        cur.execute(sql.SQL("INSERT INTO _redo {} ON CONFLICT DO NOTHING").format(unresolved))
    cur.execute("SAVEPOINT retention_key_index")
    try:
        _create_key_index(cur, schema, spec)
        indexed = True
    except psycopg2.errors.UniqueViolation:  # an id repeats in the file: find which
        cur.execute("ROLLBACK TO SAVEPOINT retention_key_index")
        cur.execute(
            sql.SQL(
                "INSERT INTO _redo SELECT {k} FROM {t} GROUP BY {k} HAVING count(*) > 1 "
                "ON CONFLICT DO NOTHING"
            ).format(k=sql.Identifier(spec.id_column), t=table)
        )
        indexed = False
    cur.execute("RELEASE SAVEPOINT retention_key_index")
    _redecide(cur, schema, spec, "_redo")
    if not indexed:
        _create_key_index(cur, schema, spec)
    cur.execute(sql.SQL("ANALYZE {}").format(table))
    return rejects, rows_read


def _drop_in(
    cur: Cursor,
    schema: str,
    spec: SourceSpec,
    file: str,
    fill: Callable,
    columns: list[_Column],
) -> tuple[pd.DataFrame, int, bool]:
    """A file added to (or replacing one of) the files already stored: staged, so only the ids
    it shares with stored rows are decided again."""
    new = sql.Identifier("_new_rows")
    cur.execute(
        sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(
            new, _ident(schema, spec.name)
        )
    )
    rejects, rows_read = fill(cur, new, columns)
    cur.execute(sql.SQL("ANALYZE {}").format(new))
    replacing = _is_recorded(cur, schema, spec.name, file)
    if replacing:
        _slice_ids(cur, schema, spec, file, "_redo")
    tracked = _track_presence(cur, schema, spec, file if replacing else None, new)
    if replacing:
        _delete_slice(cur, schema, spec, file)
    _insert_new(cur, schema, spec, new)
    _redecide(cur, schema, spec, "_redo")
    return rejects, rows_read, tracked


def _is_recorded(cur: Cursor, schema: str, source: str, file: str) -> bool:
    cur.execute(
        sql.SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE source = %s AND file = %s)").format(
            _ident(schema, MANIFEST)
        ),
        [source, file],
    )
    return bool(cur.fetchone()[0])


def remove_files(
    conn: Connection,
    schema: str,
    entries: Iterable[LoadedFile],
    accept: Callable[[Cursor], None] = lambda cur: None,
) -> None:
    """Take the slices (and rejects) of files no longer in the folder out, in one transaction;
    `accept(cur)` judges the result before the commit, like replace_slice's."""
    with _transaction(conn) as cur:
        _begin(cur, schema)
        for entry in entries:
            spec = SOURCES[entry.source]
            if table_exists(cur, schema, spec.name):
                _temp_ids(cur, "_redo")
                _slice_ids(cur, schema, spec, entry.file, "_redo")
                tracked = _track_presence(cur, schema, spec, entry.file, None)
                _delete_slice(cur, schema, spec, entry.file)
                _redecide(cur, schema, spec, "_redo")
                if tracked:
                    _cascade(cur, schema, spec)
            for table in (ROW_REJECTS, MANIFEST):
                cur.execute(
                    sql.SQL("DELETE FROM {} WHERE source = %s AND file = %s").format(
                        _ident(schema, table)
                    ),
                    [entry.source, entry.file],
                )
            _drop_unused_columns(cur, schema, spec)
        _end(cur, schema)
        accept(cur)


def _begin(cur: Cursor, schema: str) -> None:
    lock_sources(cur)
    ensure_store(cur, schema)
    # A big first load groups its ids in memory instead of in sorted runs on disk.
    cur.execute("SET LOCAL work_mem = '256MB'")
    _drop_rejects_view(cur, schema)


def _drop_rejects_view(cur: Cursor, schema: str) -> None:
    """Out of the way of the held tables' columns changing (a database from before slices
    has a table by that name: it goes too, the files will fill the view again)."""
    cur.execute(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s",
        [schema, REJECTS],
    )
    row = cur.fetchone()
    if row is not None:
        kind = sql.SQL("VIEW" if row[0] == "v" else "TABLE")
        cur.execute(sql.SQL("DROP {} {}").format(kind, _ident(schema, REJECTS)))


def _end(cur: Cursor, schema: str) -> None:
    create_rejects_view(cur, schema)


def _temp_ids(cur: Cursor, name: str, extra: str = "") -> None:
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
    cur.execute(
        sql.SQL(
            'CREATE TEMPORARY TABLE {} (k text COLLATE "C" PRIMARY KEY{}) ON COMMIT DROP'
        ).format(sql.Identifier(name), sql.SQL(extra))
    )


def _slice_ids(cur: Cursor, schema: str, spec: SourceSpec, file: str, into: str) -> None:
    """The ids of `file`'s current slice (accepted or held) into temp table `into`."""
    cur.execute(
        sql.SQL(
            "INSERT INTO {into} SELECT {k} FROM {t} WHERE {f} = %(file)s "
            "UNION SELECT {k} FROM {h} WHERE {f} = %(file)s ON CONFLICT DO NOTHING"
        ).format(
            into=sql.Identifier(into),
            k=sql.Identifier(spec.id_column),
            t=_ident(schema, spec.name),
            h=_ident(schema, held_table(spec.name)),
            f=sql.Identifier(FILE),
        ),
        {"file": file},
    )


def _referencing(spec: SourceSpec) -> list[tuple[SourceSpec, str]]:
    """(source, column) pairs whose column references `spec`'s ids."""
    return [
        (other, col.name)
        for other in SOURCES.values()
        for col in other.columns
        if col.references == spec.name
    ]


def _track_presence(
    cur: Cursor, schema: str, spec: SourceSpec, file: str | None, new: sql.Identifier | None
) -> bool:
    """For a referenced source: `_presence` := the ids of the old and new slice, and whether
    each is an accepted id before the change."""
    if not _referencing(spec):
        return False
    _temp_ids(cur, "_presence", ", was_present boolean, is_present boolean")
    if file is not None:
        _slice_ids(cur, schema, spec, file, "_presence")
    if new is not None:
        cur.execute(
            sql.SQL("INSERT INTO _presence (k) SELECT {k} FROM {n} ON CONFLICT DO NOTHING").format(
                k=sql.Identifier(spec.id_column), n=new
            )
        )
    _mark_presence(cur, schema, spec, "was_present")
    return True


def _mark_presence(cur: Cursor, schema: str, spec: SourceSpec, column: str) -> None:
    cur.execute(
        sql.SQL(
            "UPDATE _presence p SET {c} = EXISTS (SELECT 1 FROM {s} x WHERE x.{k} = p.k)"
        ).format(
            c=sql.Identifier(column),
            s=_ident(schema, spec.name),
            k=sql.Identifier(spec.id_column),
        )
    )


def _cascade(cur: Cursor, schema: str, spec: SourceSpec) -> None:
    """Decide again the rows of referencing sources whose referenced id came or went: held
    rows either way (freed, or their reason changes), accepted rows only for an id that went
    (an accepted row's references resolved already)."""
    _mark_presence(cur, schema, spec, "is_present")
    for other, column in _referencing(spec):
        if not table_exists(cur, schema, other.name):
            continue
        _temp_ids(cur, "_redo")
        cur.execute(
            sql.SQL(
                "INSERT INTO _redo SELECT x.{k} FROM {h} x JOIN _presence p ON p.k = x.{c} "
                "WHERE p.is_present IS DISTINCT FROM p.was_present "
                "UNION SELECT x.{k} FROM {t} x JOIN _presence p ON p.k = x.{c} "
                "WHERE p.was_present AND NOT p.is_present"
            ).format(
                k=sql.Identifier(other.id_column),
                c=sql.Identifier(column),
                t=_ident(schema, other.name),
                h=_ident(schema, held_table(other.name)),
            )
        )
        _redecide(cur, schema, other, "_redo")


def _delete_slice(cur: Cursor, schema: str, spec: SourceSpec, file: str) -> None:
    for table in (spec.name, held_table(spec.name)):
        cur.execute(
            sql.SQL("DELETE FROM {} WHERE {} = %s").format(
                _ident(schema, table), sql.Identifier(FILE)
            ),
            [file],
        )


def _insert_new(cur: Cursor, schema: str, spec: SourceSpec, new: sql.Identifier) -> None:
    """Rows of the new slice whose id is nowhere else and whose references resolve go straight
    into `S`; the others wait in `_held_S` for `_redecide` (their ids join `_redo`)."""
    k = sql.Identifier(spec.id_column)
    table, held = _ident(schema, spec.name), _ident(schema, held_table(spec.name))
    names = _names(stored_columns(cur, schema, spec.name))
    cur.execute(
        sql.SQL(
            "INSERT INTO _redo "
            "SELECT {k} FROM {new} GROUP BY {k} HAVING count(*) > 1 "
            "UNION SELECT n.{k} FROM {new} n JOIN {t} x ON x.{k} = n.{k} "
            "UNION SELECT n.{k} FROM {new} n JOIN {h} x ON x.{k} = n.{k} "
            "{unresolved} ON CONFLICT DO NOTHING"
        ).format(
            k=k,
            new=new,
            t=table,
            h=held,
            unresolved=sql.SQL("UNION {}").format(u)
            if (u := _unresolved(schema, spec, new))
            else sql.SQL(""),
        )
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {t} ({c}) SELECT {c} FROM {new} n "
            "WHERE NOT EXISTS (SELECT 1 FROM _redo x WHERE x.k = n.{k})"
        ).format(t=table, c=names, new=new, k=k)
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {h} ({c}) SELECT {c} FROM {new} n "
            "WHERE EXISTS (SELECT 1 FROM _redo x WHERE x.k = n.{k})"
        ).format(h=held, c=names, new=new, k=k)
    )


def _key_index(spec: SourceSpec) -> str:
    return f"{spec.name}_{spec.id_column}_key"


def _create_key_index(cur: Cursor, schema: str, spec: SourceSpec) -> None:
    cur.execute(
        sql.SQL("CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.Identifier(_key_index(spec)),
            _ident(schema, spec.name),
            sql.Identifier(spec.id_column),
        )
    )


def _resolves(schema: str, spec: SourceSpec, alias: str) -> list[tuple[str, sql.Composable]]:
    """(column, SQL true when row `alias`'s reference in it names an accepted id) per reference
    column of `spec`."""
    return [
        (
            col.name,
            sql.SQL(
                "({a}.{c} IS NULL OR EXISTS (SELECT 1 FROM {t} r WHERE r.{k} = {a}.{c}))"
            ).format(
                a=sql.Identifier(alias),
                c=sql.Identifier(col.name),
                t=_ident(schema, col.references),
                k=sql.Identifier(SOURCES[col.references].id_column),
            ),
        )
        for col in spec.columns
        if col.references
    ]


def _unresolved(schema: str, spec: SourceSpec, rows: sql.Composable) -> sql.Composable | None:
    """SQL: the ids of `rows` with a reference naming no accepted id (an anti-join per
    reference column); None when `spec` references nothing."""
    parts = [
        sql.SQL(
            "SELECT n.{k} FROM {rows} n WHERE n.{c} IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM {t} r WHERE r.{rk} = n.{c})"
        ).format(
            k=sql.Identifier(spec.id_column),
            rows=rows,
            c=sql.Identifier(col.name),
            t=_ident(schema, col.references),
            rk=sql.Identifier(SOURCES[col.references].id_column),
        )
        for col in spec.columns
        if col.references
    ]
    return sql.SQL(" UNION ").join(parts) if parts else None


def _unknown_reasons(schema: str, spec: SourceSpec, alias: str) -> sql.Composable:
    """SQL: "unknown customer_id 'X'" for each reference of row `alias` that does not resolve,
    joined by "; " ('' when all do)."""
    parts = [
        sql.SQL("CASE WHEN NOT {ok} THEN {label} || {a}.{c} || {q} END").format(
            ok=check,
            label=sql.Literal(f"unknown {name} '"),
            a=sql.Identifier(alias),
            c=sql.Identifier(name),
            q=sql.Literal("'"),
        )
        for name, check in _resolves(schema, spec, alias)
    ]
    if not parts:
        return sql.SQL("''")
    return sql.SQL("concat_ws('; ', {})").format(sql.SQL(", ").join(parts))


def _redecide(cur: Cursor, schema: str, spec: SourceSpec, ids: str) -> None:
    """Every stored row of the ids in temp table `ids` again: the first row in (file name,
    line) order whose references resolve is accepted, the others are held with their reason."""
    cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(sql.Identifier(ids)))
    if not cur.fetchone()[0]:
        return
    k = sql.Identifier(spec.id_column)
    table, held = _ident(schema, spec.name), _ident(schema, held_table(spec.name))
    row_columns = stored_columns(cur, schema, spec.name)
    names = _names(row_columns)
    f, line = sql.Identifier(FILE), sql.Identifier(LINE)
    cur.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE _candidates ON COMMIT DROP AS "
            "WITH a AS (DELETE FROM {t} WHERE {k} IN (SELECT k FROM {ids}) RETURNING {c}), "
            "h AS (DELETE FROM {h} WHERE {k} IN (SELECT k FROM {ids}) RETURNING {c}) "
            "SELECT {c} FROM a UNION ALL SELECT {c} FROM h"
        ).format(t=table, h=held, k=k, c=names, ids=sql.Identifier(ids))
    )
    cur.execute(
        sql.SQL(
            "CREATE TEMPORARY TABLE _ranked ON COMMIT DROP AS "
            "SELECT r.*, CASE WHEN r._unknown = '' THEN row_number() OVER "
            "(PARTITION BY r._unknown = '', r.{k} ORDER BY r.{f}, r.{l}) END "
            "AS _rank FROM (SELECT c.*, {unknown} AS _unknown FROM _candidates c) r"
        ).format(k=k, f=f, l=line, unknown=_unknown_reasons(schema, spec, "c"))
    )
    cur.execute(
        sql.SQL("INSERT INTO {t} ({c}) SELECT {c} FROM _ranked WHERE _rank = 1").format(
            t=table, c=names
        )
    )
    cur.execute(
        sql.SQL(
            "INSERT INTO {h} ({c}, {reason}) SELECT {rc}, CASE WHEN r._unknown <> '' "
            "THEN r._unknown ELSE {dup} || w.{f} || ' line ' || w.{l} || ')' END "
            "FROM _ranked r LEFT JOIN _ranked w ON w.{k} = r.{k} AND w._rank = 1 "
            "WHERE r._rank IS DISTINCT FROM 1"
        ).format(
            h=held,
            c=names,
            rc=sql.SQL(", ").join(sql.SQL("r.{}").format(sql.Identifier(n)) for n in row_columns),
            reason=sql.Identifier(REASON),
            dup=sql.Literal(f"duplicate {spec.id_column} (first at "),
            f=f,
            l=line,
            k=k,
        )
    )
    cur.execute("DROP TABLE _candidates; DROP TABLE _ranked")


def _store_row_rejects(
    cur: Cursor, schema: str, source: str, file: str, rejects: pd.DataFrame, run_id: str | None
) -> None:
    target = _ident(schema, ROW_REJECTS)
    cur.execute(
        sql.SQL("DELETE FROM {} WHERE source = %s AND file = %s").format(target), [source, file]
    )
    if rejects.empty:
        return
    frame = pd.DataFrame(
        {
            "source": source,
            "file": file,
            "line": rejects["line"].astype("int64"),
            "reason": rejects["reason"].astype("str"),
            "raw": rejects["raw"].astype("str"),
            "run_id": pd.Series([run_id] * len(rejects), dtype="str", index=rejects.index),
        }
    )
    _copy_in(cur, target, _columns_for(frame, ()), frame, created_from_columns=False)


def _record(
    cur: Cursor, schema: str, entry: LoadedFile, rows_read: int, rejected: int, run_id: str | None
) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (source, file, size, mtime_ns, columns, rows_read, rows_rejected, "
            "loaded_at, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s) "
            "ON CONFLICT (source, file) DO UPDATE SET size = EXCLUDED.size, "
            "mtime_ns = EXCLUDED.mtime_ns, columns = EXCLUDED.columns, "
            "rows_read = EXCLUDED.rows_read, rows_rejected = EXCLUDED.rows_rejected, "
            "loaded_at = EXCLUDED.loaded_at, run_id = EXCLUDED.run_id"
        ).format(_ident(schema, MANIFEST)),
        [
            entry.source,
            entry.file,
            entry.size,
            entry.mtime_ns,
            list(entry.columns),
            rows_read,
            rejected,
            run_id,
        ],
    )


def _drop_unused_columns(cur: Cursor, schema: str, spec: SourceSpec) -> None:
    """An extra column no loaded file has any more goes, as it would in a rebuild."""
    if not table_exists(cur, schema, spec.name):
        return
    cur.execute(
        sql.SQL("SELECT DISTINCT unnest(columns) FROM {} WHERE source = %s").format(
            _ident(schema, MANIFEST)
        ),
        [spec.name],
    )
    in_files = {name for (name,) in cur.fetchall()}
    keep = in_files | {c.name for c in spec.columns} | {FILE, LINE, REASON}
    for table in (spec.name, held_table(spec.name)):
        for name in stored_columns(cur, schema, table):
            if name not in keep:
                cur.execute(
                    sql.SQL("ALTER TABLE {} DROP COLUMN {}").format(
                        _ident(schema, table), sql.Identifier(name)
                    )
                )


def create_rejects_view(cur: Cursor, schema: str) -> None:
    """`rejected_rows`: per-row rejects plus the held rows, each with file, line and reason;
    a held row's raw text is its stored values as CSV."""
    parts = [
        sql.SQL("SELECT source, file, line, reason, raw, run_id FROM {}").format(
            _ident(schema, ROW_REJECTS)
        )
    ]
    for spec in SOURCES.values():
        held = held_table(spec.name)
        if not table_exists(cur, schema, held):
            continue
        data = [n for n in stored_columns(cur, schema, held) if n not in (FILE, LINE, REASON)]
        raw = sql.SQL(" || ',' || ").join(
            sql.SQL(
                "coalesce(CASE WHEN h.{c}::text ~ '[\",\\n\\r]' THEN '\"' || "
                "replace(h.{c}::text, '\"', '\"\"') || '\"' ELSE h.{c}::text END, '')"
            ).format(c=sql.Identifier(n))
            for n in data
        )
        parts.append(
            sql.SQL(
                "SELECT {s}, h.{f}, h.{l}, h.{r}, {raw}, m.run_id FROM {h} h "
                "LEFT JOIN {m} m ON m.source = {s} AND m.file = h.{f}"
            ).format(
                s=sql.Literal(spec.name),
                f=sql.Identifier(FILE),
                l=sql.Identifier(LINE),
                r=sql.Identifier(REASON),
                raw=raw,
                h=_ident(schema, held),
                m=_ident(schema, MANIFEST),
            )
        )
    cur.execute(
        sql.SQL("CREATE OR REPLACE VIEW {} AS {}").format(
            _ident(schema, REJECTS), sql.SQL(" UNION ALL ").join(parts)
        )
    )


def reject_counts(cur: Cursor, schema: str, source: str) -> tuple[int, int]:
    """(records read, records rejected) over every loaded file of `source`, held rows included."""
    cur.execute(
        sql.SQL(
            "SELECT coalesce(sum(rows_read), 0), coalesce(sum(rows_rejected), 0) FROM {} "
            "WHERE source = %s"
        ).format(_ident(schema, MANIFEST)),
        [source],
    )
    read, rejected = cur.fetchone()
    held = 0
    if table_exists(cur, schema, held_table(source)):
        cur.execute(sql.SQL("SELECT count(*) FROM {}").format(_ident(schema, held_table(source))))
        held = cur.fetchone()[0]
    return int(read), int(rejected) + int(held)


def source_shape(conn: Connection, schema: str, source: str) -> tuple[list[tuple[str, str]], int]:
    """[(column, PostgreSQL type)] and row count of a source table. Every row read is stored,
    rejected or held, so the count comes from the manifest without scanning the table."""
    with _transaction(conn) as cur:
        columns = column_types(cur, schema, source)
        read, rejected = reject_counts(cur, schema, source)
        return columns, read - rejected


def reject_reasons(
    conn: Connection, schema: str, source: str, files: Sequence[str], limit: int = 10
) -> list[tuple[str, int]]:
    """The most common reasons (without the quoted value) rows of `files` are rejected for."""
    with _transaction(conn) as cur:
        return reasons_rejected(cur, schema, source, files, limit)


def reasons_rejected(
    cur: Cursor, schema: str, source: str, files: Sequence[str] | None = None, limit: int = 10
) -> list[tuple[str, int]]:
    """reject_reasons in the caller's transaction (so also for a change not committed yet);
    `files` None: every file of the source."""
    cur.execute(
        sql.SQL(
            "SELECT split_part(reason, ' ''', 1) AS why, count(*) FROM {} "
            "WHERE source = %(source)s AND (%(files)s::text[] IS NULL OR file = ANY(%(files)s)) "
            "GROUP BY why ORDER BY count(*) DESC, why LIMIT %(limit)s"
        ).format(_ident(schema, REJECTS)),
        {"source": source, "files": None if files is None else list(files), "limit": limit},
    )
    return [(why, int(n)) for why, n in cur.fetchall()]


def ensure_summaries(conn: Connection, schema: str) -> None:
    """The event feeds' summaries for source tables stored before they existed (a database
    an earlier version loaded), so the analytics can read them before the next drop."""
    with _transaction(conn) as cur:  # usually all there: no wait behind a load for the lock
        if not any(_summary_missing(cur, schema, s) for s in SUMMARIES.values()):
            return
    with _transaction(conn) as cur:
        lock_sources(cur)
        for summary in SUMMARIES.values():
            if table_exists(cur, schema, summary.source):
                ensure_summary(cur, schema, summary)


def _summary_missing(cur: Cursor, schema: str, summary: Summary) -> bool:
    return table_exists(cur, schema, summary.source) and not summary_kept(cur, schema, summary)


def drop_sources(conn: Connection, schema: str) -> None:
    """Forget every loaded file: source tables, held rows, rejects and the manifest go, so the
    next load starts from the files alone."""
    with _transaction(conn) as cur:
        lock_sources(cur)
        _drop_rejects_view(cur, schema)
        for summary in SUMMARIES.values():
            drop_summary(cur, schema, summary)
        for spec in SOURCES.values():
            for table in (spec.name, held_table(spec.name)):
                cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(schema, table)))
        for table in (ROW_REJECTS, MANIFEST):
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(_ident(schema, table)))


def reject_counts_by_source(
    conn: Connection, schema: str, exclude: str = ""
) -> dict[str, tuple[int, int]]:
    """reject_counts of every source with a loaded file but `exclude`."""
    with _transaction(conn) as cur:
        if not table_exists(cur, schema, MANIFEST):
            return {}
        cur.execute(
            sql.SQL("SELECT DISTINCT source FROM {} WHERE source <> %s").format(
                _ident(schema, MANIFEST)
            ),
            [exclude],
        )
        return {source: reject_counts(cur, schema, source) for (source,) in cur.fetchall()}
