"""A source loaded and stored at the same time: each validated block is COPYed into the new
table (another thread, another core) while the loader parses the next one.

No Dagster here. The table is replaced atomically once every block and the duplicate removal
are in; a structural error half way rolls it back, so the old table stays as it was.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Mapping
from contextlib import suppress
from pathlib import Path

import pandas as pd
import pyarrow as pa

from .core.loading import LoadedSource, load_source, source_template
from .core.sources import SourceSpec
from .storage.tables import Connection, LaterDuplicates, write_table_blocks

_END = object()
_QUEUE_BLOCKS = 2  # blocks waiting for the writer: bounds the memory the overlap costs


class _LoadFailed(Exception):
    """Tells the writer to roll back: the loader raised."""


def load_and_store(
    conn: Connection,
    schema: str,
    spec: SourceSpec,
    files: list[Path],
    known_ids: Mapping[str, pd.Series],
    money_columns: list[str],
    keep: list[str] | None = None,
) -> tuple[LoadedSource, list[tuple[str, str]]]:
    """Load `spec`'s drops into table `schema.<source name>`; returns what was loaded (its frame
    holds the `keep` columns, see load_source) and the table's [(column, PostgreSQL type)]."""
    template = source_template(spec, files)
    blocks: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_BLOCKS)
    outcome: dict[str, object] = {}

    def items() -> Iterator[pa.Table | LaterDuplicates]:
        while (item := blocks.get()) is not _END:
            if isinstance(item, _LoadFailed):
                raise item
            yield item  # type: ignore[misc]

    def write() -> None:
        try:
            outcome["columns"] = write_table_blocks(
                conn, schema, spec.name, template, items(), money_columns
            )
        except BaseException as e:  # handed to the loading thread below
            outcome["error"] = e

    def put(item: object) -> None:
        while True:
            if "error" in outcome:
                raise outcome["error"]  # type: ignore[misc]
            try:
                blocks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    writer = threading.Thread(target=write, name=f"store-{spec.name}", daemon=True)
    writer.start()
    try:
        loaded = load_source(spec, files, known_ids, put, template, keep)
        put(LaterDuplicates(spec.id_column, loaded.duplicate_ids))
        put(_END)
    except BaseException:
        if "error" not in outcome:
            with suppress(Exception):  # the writer failed meanwhile: it has rolled back
                put(_LoadFailed())
        writer.join()
        raise
    writer.join()
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return loaded, outcome["columns"]  # type: ignore[return-value]
