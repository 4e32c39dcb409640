"""The "one-day drop" scenario's folders and file operations, for benchmarks/run.py.

A generated history is split into `base/` (every row but those of its last day) and `drop/`
(that day's `attendance_<day>.csv` and `transactions_<day>.csv`), so the benchmark can load the
base, then time `retention-assets run` as the day's drop arrives, is replaced and is removed,
the way exports land in a real data folder. The split streams each CSV through Arrow as text:
one read and one write whatever the size, and rows keep their exact text.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

# The event files that are split, by the column that dates a row; the others stay whole.
SPLIT = {"attendance": "check_in", "transactions": "transaction_date"}
WHOLE = ("customers", "packages")
_BLOCK = 16 << 20


@dataclass(frozen=True)
class DropFolders:
    root: Path
    day: str  # YYYY-MM-DD, the last day of the history

    @property
    def base(self) -> Path:
        return self.root / "base"

    @property
    def drop(self) -> Path:
        return self.root / "drop"

    def drop_files(self) -> dict[str, Path]:
        """source -> its file in drop/, e.g. attendance -> drop/attendance_2026-10-31.csv."""
        return {source: self.drop / f"{source}_{self.day}.csv" for source in SPLIT}


def build_drop_folders(data: Path, root: Path) -> DropFolders:
    """Split `data` (a generated dataset) into root/base and root/drop, once: the result is
    cached behind root/.complete, which holds the day (the split takes 5 s at tier M).
    A dataset generated again since (its own .complete is newer) is split again."""
    marker, generated = root / ".complete", data / ".complete"
    if marker.exists() and not (
        generated.exists() and generated.stat().st_mtime > marker.stat().st_mtime
    ):
        return DropFolders(root, marker.read_text().strip())
    shutil.rmtree(root, ignore_errors=True)
    folders = DropFolders(root, last_day(data))
    folders.base.mkdir(parents=True)
    folders.drop.mkdir()
    for source in WHOLE:
        _link_or_copy(data / f"{source}.csv", folders.base / f"{source}.csv")
    for source, column in SPLIT.items():
        split_day(
            data / f"{source}.csv",
            column,
            folders.day,
            folders.base / f"{source}.csv",
            folders.drop_files()[source],
        )
    marker.write_text(folders.day)
    return folders


def last_day(data: Path) -> str:
    """The latest date among the event files' dating columns (ISO text sorts by time)."""
    latest = ""
    for source, column in SPLIT.items():
        for batch in _batches(data / f"{source}.csv", [column]):
            top = pc.max(batch.column(0)).as_py()
            latest = max(latest, top or "")
    if not latest:
        raise ValueError(f"no attendance or transaction rows in {data}")
    return latest[:10]


def split_day(src: Path, column: str, day: str, keep: Path, drop: Path) -> tuple[int, int]:
    """Rows of `src` whose `column` falls on `day` go to `drop`, the others to `keep`, each
    file under src's header line; returns (rows kept, rows dropped)."""
    with src.open("rb") as f:
        header = f.readline()
    names = header.decode("utf-8-sig").strip().split(",")
    counts = [0, 0]
    with keep.open("wb") as k, drop.open("wb") as d:
        k.write(header)
        d.write(header)
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        writers = None
        for batch in _batches(src, names):
            if writers is None:
                writers = [
                    pacsv.CSVWriter(out, batch.schema, write_options=options) for out in (k, d)
                ]
            on_day = pc.equal(pc.utf8_slice_codeunits(batch.column(column), 0, 10), day)
            for i, part in enumerate((batch.filter(pc.invert(on_day)), batch.filter(on_day))):
                writers[i].write_batch(part)
                counts[i] += part.num_rows
        for writer in writers or ():
            writer.close()
    return counts[0], counts[1]


def reset_work(folders: DropFolders, work: Path) -> None:
    """`work` holds just the base: hard links, so a rep costs no copy of gigabytes. The
    scenario replaces and removes files by name only, which never touches the linked data."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for path in sorted(folders.base.glob("*.csv")):
        _link_or_copy(path, work / path.name)
        settle(work / path.name)


def add_drop(folders: DropFolders, work: Path) -> list[Path]:
    """Copy the day's drop files into `work`, as an export job would put them there."""
    added = []
    for path in folders.drop_files().values():
        shutil.copyfile(path, work / path.name)
        added.append(settle(work / path.name))
    return added


def replace_with_changed_copy(path: Path) -> Path:
    """Replace `path` by a corrected export: the same rows without the last one, written
    beside it and renamed over it (so the reader never sees half a file)."""
    data = path.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1
    if cut <= data.find(b"\n") + 1:
        raise ValueError(f"{path} has no data row to leave out")
    partial = path.with_name(f".{path.name}.partial")
    partial.write_bytes(data[:cut])
    os.replace(partial, path)
    return settle(path)


def settle(path: Path) -> Path:
    """Date the file a minute back: `run` waits RETENTION_SETTLE_SECONDS for files modified
    just now (they may still be being written), and the benchmark must not time that wait.
    Each call dates differently, so a replaced file still differs from the one loaded."""
    stamp = time.time() - 60
    os.utime(path, (stamp, stamp))
    return path


def _batches(path: Path, columns: list[str]) -> pacsv.CSVStreamingReader:
    """`columns` of the CSV as text, streamed in 16 MB blocks."""
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=_BLOCK),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in columns}, include_columns=columns
        ),
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(src, dst)
