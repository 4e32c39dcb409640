"""One drop file parsed and stored as its source's slice at the same time: each validated
block is COPYed (another thread, another core) while the next one is parsed, all inside the
transaction that swaps the slice in, so a failure half way leaves every table as it was."""

from __future__ import annotations

import dataclasses
import queue
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pandas as pd
import pyarrow as pa
from psycopg2 import sql

from ..core.sources import FILE_COLUMN, LINE_COLUMN, SourceSpec
from ..storage import slices
from ..storage.tables import Connection, Cursor, _Column, _copy_in
from .loading import parse_file, source_template

_QUEUE_BLOCKS = 2  # blocks waiting for the writer: bounds the memory the overlap costs
_END = object()
_BOOKKEEPING = [
    _Column(LINE_COLUMN, "bigint", True, pa.int64()),
    _Column(FILE_COLUMN, "text", True, pa.string()),
]


class _ParseFailed(Exception):
    """Tells the writer to stop: the parser raised."""


def store_file(
    conn: Connection,
    schema: str,
    spec: SourceSpec,
    path: Path,
    run_id: str | None,
    accept: Callable[[Cursor], None] = lambda cur: None,
) -> slices.LoadedFile:
    """Replace `path`'s slice of source `spec` with its valid rows and its rejects; returns
    its manifest entry. `accept(cur)` judges the result before the commit (see replace_slice)."""
    template = source_template(spec, [path])
    stat = path.stat()
    entry = slices.LoadedFile(
        spec.name, path.name, stat.st_size, stat.st_mtime_ns, tuple(template.columns), 0, 0
    )

    def fill(
        cur: Cursor, target: sql.Identifier, columns: list[_Column]
    ) -> tuple[pd.DataFrame, int]:
        parsed = _copy_while_parsing(cur, target, columns + _BOOKKEEPING, spec, path, template)
        if parsed.lines is not None:  # records spanning lines, blank lines: map to physical
            cur.execute(
                sql.SQL(
                    "UPDATE {t} SET {l} = m.line FROM unnest(%s::bigint[], %s::bigint[]) "
                    "AS m(ordinal, line) WHERE {t}.{l} = m.ordinal"
                ).format(t=target, l=sql.Identifier(LINE_COLUMN)),
                [list(range(2, len(parsed.lines) + 2)), parsed.lines.tolist()],
            )
        return parsed.rejects, parsed.rows_read

    counts = slices.replace_slice(conn, schema, spec, entry, template, fill, run_id, accept)
    return dataclasses.replace(entry, rows_read=counts[0], rows_rejected=counts[1])


def _copy_while_parsing(
    cur: Cursor,
    target: sql.Identifier,
    columns: list[_Column],
    spec: SourceSpec,
    path: Path,
    template: pd.DataFrame,
):
    blocks: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_BLOCKS)
    outcome: dict[str, BaseException] = {}
    file_name = pa.scalar(path.name)

    def items() -> Iterator[pa.Table]:
        while (item := blocks.get()) is not _END:
            if isinstance(item, _ParseFailed):
                raise item
            yield item  # type: ignore[misc]

    def write() -> None:
        try:
            for block in items():
                _copy_in(cur, target, columns, block, created_from_columns=True)
        except BaseException as e:  # handed to the parsing thread below
            outcome["error"] = e

    def put(item: object) -> None:
        while True:
            if "error" in outcome:
                raise outcome["error"]
            try:
                blocks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def on_block(table: pa.Table) -> None:
        if len(table):
            put(table.append_column(FILE_COLUMN, pa.repeat(file_name, len(table))))

    writer = threading.Thread(target=write, name=f"store-{spec.name}", daemon=True)
    writer.start()
    try:
        parsed = parse_file(spec, path, on_block, template)
        put(_END)
    except BaseException:
        if "error" not in outcome:
            with suppress(Exception):  # the writer failed meanwhile
                put(_ParseFailed())
        writer.join()
        raise
    writer.join()
    if "error" in outcome:
        raise outcome["error"]
    return parsed
