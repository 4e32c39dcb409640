"""A source's CSV drops -> one typed frame, plus the rows it rejected and why.

Structural problems (no file, no header, missing column, not UTF-8, not CSV)
raise `SourceError`; row problems never do: they become rows of the rejects
frame, each with its file, physical line, reason and raw text.
"""

from __future__ import annotations

import csv
import io
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .dates import DATE_DTYPE, parse_timestamps
from .sources import Column, Kind, SourceSpec

BOM = b"\xef\xbb\xbf"
_FILE = "__file"
_CHUNK = 16 << 20
_HEAD = 1 << 20  # bytes read to find the header
_READ_AHEAD = 4  # blocks arrow may read ahead of the parse
_LF = ord("\n")


class SourceError(ValueError):
    """A source that cannot be read at all: the asset fails with this message."""

    def __init__(
        self, file: Path | str, problem: str, *, column: str | None = None, line: int | None = None
    ) -> None:
        self.file, self.problem, self.column, self.line = str(file), problem, column, line
        where = self.file
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}")


@dataclass
class LoadedSource:
    frame: pd.DataFrame
    rejects: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    duplicate_ids: list[str] = field(default_factory=list)  # ids seen again after their first row

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.rejects)

    @property
    def reject_fraction(self) -> float:
        return len(self.rejects) / self.rows_read if self.rows_read else 0.0


def source_files(data_dir: Path, name: str) -> list[Path]:
    """`NAME.csv` and every `NAME_*.csv` drop (any letter case), in file-name order."""
    if not data_dir.is_dir():
        raise SourceError(data_dir, "data folder does not exist")
    found = [
        p
        for p in data_dir.iterdir()
        if p.is_file()
        and p.suffix.lower() == ".csv"
        and (p.stem.lower() == name or p.name.lower().startswith(f"{name}_"))
    ]
    return sorted(found, key=lambda p: p.name)


def source_template(spec: SourceSpec, files: list[Path]) -> pd.DataFrame:
    """The empty frame a source loads into: its columns, then every drop's extra columns in
    first-seen order, typed. Checks every file's header, so structural errors come first."""
    if not files:
        raise SourceError(f"{spec.name}.csv", "missing file: no CSV for this source was found")
    columns = {col.name: _empty(col.kind) for col in spec.columns}
    for path in files:
        names, _ = _read_header(path)
        for required in spec.required:
            if required not in names:
                raise SourceError(path, "missing required column", column=required, line=1)
        for name in names:
            if spec.column(name) is None and name not in columns:
                columns[name] = _empty("text")
    return pd.DataFrame(columns)


def load_source(
    spec: SourceSpec,
    files: list[Path],
    known_ids: Mapping[str, pd.Series] | None = None,
    on_block: Callable[[pa.Table], None] | None = None,
    template: pd.DataFrame | None = None,
    keep: Sequence[str] | None = None,
) -> LoadedSource:
    """Read and validate every drop of one source; `known_ids` holds the referenced sources' ids.

    Files are streamed in blocks: only one block's text is in memory at a time, next to the
    rows kept so far. `on_block` gets each block's valid rows (an Arrow table with
    source_template's columns) as soon as they are typed, before duplicates across blocks are
    known: the caller can store them while the next block is parsed, then drop
    `LoadedSource.duplicate_ids`. A caller that already built the template (to create the
    table) passes it in.

    `keep` names the columns `LoadedSource.frame` holds (default: all), so a caller that only
    aggregates two columns of 14M rows does not hold the other three. A column referencing a
    source in `known_ids` comes as a categorical over that source's ids: 4 bytes a row, and
    the reference check already found each row's code.
    """
    if template is None:
        template = source_template(spec, files)
    kept = list(template.columns) if keep is None else list(keep)
    if unknown := [name for name in kept if name not in template.columns]:
        raise ValueError(f"{spec.name} has no column(s) {unknown}")
    known = {
        name: pa.array(pd.unique(ids.dropna().astype("str")), pa.string())
        for name, ids in (known_ids or {}).items()
    }
    shape = _KeptShape.of(spec, kept, known)
    ledger = _IdLedger(spec.id_column, files)
    parts = [
        _read_file(path, spec, known, number, template, on_block, shape, ledger)
        for number, path in enumerate(files)
    ]
    frame = pd.concat([rows for rows, _ in parts], ignore_index=True)
    rejects = [rejected for _, rejected in parts]
    duplicate_ids: list[str] = []
    later = ledger.later_duplicates()
    if later is not None:
        rejects.append(_duplicates(later, spec, files))
        duplicate_ids = later.ids.unique().tolist()
        frame = frame.loc[~later.mask]
    rejects = pd.concat(rejects, ignore_index=True).sort_values([_FILE, "line"], kind="stable")
    rejects = rejects.drop(columns=_FILE).astype(
        {"source": "str", "file": "str", "line": "int64", "reason": "str", "raw": "str"}
    )
    return LoadedSource(
        shape.decode(frame.reset_index(drop=True)),
        rejects.reset_index(drop=True),
        list(files),
        duplicate_ids,
    )


@dataclass(frozen=True)
class _KeptShape:
    """The columns a load keeps, and the ids each referencing column is coded against."""

    columns: list[str]
    categories: dict[str, pd.Index]  # column -> the referenced source's ids

    @classmethod
    def of(cls, spec: SourceSpec, kept: list[str], known: Mapping[str, pa.Array]) -> _KeptShape:
        categories = {}
        for name in kept:
            col = spec.column(name)
            if col is not None and col.references in known:
                ids = known[col.references].to_numpy(zero_copy_only=False)
                categories[name] = pd.Index(ids, dtype="str")
        return cls(kept, categories)

    def take(self, table: pa.Table, rows: np.ndarray, codes: Mapping[str, np.ndarray]):
        """The kept columns of `table`'s `rows` (a boolean mask) as pandas, referencing columns
        as their int32 codes: categoricals are made once, by `decode`, as each one hashes its
        categories whenever blocks are concatenated."""
        plain = table.select([c for c in self.columns if c not in self.categories])
        out = plain.filter(pa.array(rows)).to_pandas(types_mapper=_PANDAS_TYPES.get)
        for name in self.categories:
            out[name] = codes[name][rows]
        return out[self.columns]

    def decode(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(
            **{
                name: pd.Categorical.from_codes(
                    frame[name].to_numpy(), categories=categories, validate=False
                )
                for name, categories in self.categories.items()
            }
        )


class _IdLedger:
    """What finding later duplicates needs once every file is read: each valid row's id.

    Strictly ascending ids (the usual export) are recognised as the blocks arrive, and no id
    is kept while they last: the common case stores and hashes nothing. From the first block
    out of order on, ids are kept (null for rejected rows); the blocks before it are re-read,
    their id column only, when the search runs."""

    def __init__(self, id_column: str, files: list[Path]) -> None:
        self.id_column, self.files = id_column, files
        # (file number, first ordinal, rows, kept ids or None, rejected rows of the block)
        self.blocks: list[tuple[int, int, int, pa.Array | None, np.ndarray]] = []
        self.lines: dict[int, np.ndarray | None] = {}  # file number -> _record_lines' map
        self.ascending = True
        self.last: str | None = None

    def add(self, number: int, offset: int, ids: pa.Array, valid: np.ndarray) -> None:
        if self.ascending:
            present = ids.filter(pa.array(valid))
            if len(present):
                first, last = present[0].as_py(), present[-1].as_py()
                in_order = len(present) < 2 or pc.all(pc.greater(present[1:], present[:-1])).as_py()
                self.ascending = bool(in_order) and (self.last is None or first > self.last)
                self.last = last
        kept = None if self.ascending else _null_where(ids, ~valid)
        self.blocks.append((number, offset, len(ids), kept, np.flatnonzero(~valid)))

    def later_duplicates(self) -> _LaterDuplicates | None:
        if self.ascending or not self.blocks:
            return None
        ids = pd.Series(pa.chunked_array(self._ids(), pa.string()).to_pandas())
        numbers = np.concatenate([np.full(n_rows, n, np.int32) for n, _, n_rows, *_ in self.blocks])
        ordinals = np.concatenate([np.arange(o, o + n_rows) for _, o, n_rows, *_ in self.blocks])
        valid = ids.notna().to_numpy()
        ids, numbers, ordinals = ids[valid].reset_index(drop=True), numbers[valid], ordinals[valid]
        mask = ids.duplicated(keep="first").to_numpy()
        if not mask.any():
            return None
        lines = np.empty(len(ids), dtype=np.int64)
        for number in np.unique(numbers):
            rows = numbers == number
            lines[rows] = _physical(self.lines[int(number)], ordinals[rows])
        first = ~mask & ids.isin(ids[mask]).to_numpy()
        where = dict(zip(ids[first], zip(numbers[first], lines[first], strict=True), strict=True))
        return _LaterDuplicates(mask, ids[mask], numbers[mask], lines[mask], where)

    def _ids(self) -> list[pa.Array]:
        """Every block's ids, re-reading those not kept."""
        reread: dict[int, pa.Array] = {}
        chunks = []
        for number, offset, n_rows, kept, rejected in self.blocks:
            if kept is None:
                if number not in reread:
                    reread[number] = _id_column(self.files[number], self.id_column)
                rejected_mask = np.zeros(n_rows, dtype=bool)
                rejected_mask[rejected] = True
                kept = _null_where(reread[number].slice(offset, n_rows), rejected_mask)
            chunks.append(kept)
        return chunks


def _null_where(values: pa.Array, mask: np.ndarray) -> pa.Array:
    return values if not mask.any() else pc.if_else(pa.array(~mask), values, None)


def _id_column(path: Path, name: str) -> pa.Array:
    """A file's id column as the loader saw it (same records, trimmed), parsed again."""
    names, _ = _read_header(path)
    with _CountingFile(path) as source:
        parts = [batch.column(name) for batch in _Batches(source, path, names, include=[name])]
    return pc.utf8_trim_whitespace(pa.concat_arrays(parts) if parts else pa.array([], pa.string()))


@dataclass(frozen=True)
class _LaterDuplicates:
    mask: np.ndarray  # over the valid rows, in load order
    ids: pd.Series
    numbers: np.ndarray  # file number of each later occurrence
    lines: np.ndarray  # and its physical line
    first: dict[str, tuple[int, int]]  # id -> (file number, line) of its first occurrence


def _duplicates(later: _LaterDuplicates, spec: SourceSpec, files: list[Path]) -> pd.DataFrame:
    """Rejects for every later occurrence of an id, pointing at the first one."""
    raw: dict[tuple[int, int], str] = {}
    for number in np.unique(later.numbers):
        texts = _raw_records(files[int(number)], set(later.lines[later.numbers == number].tolist()))
        raw.update({(int(number), line): text for line, text in texts.items()})
    where = {row_id: f"{files[n].name} line {line}" for row_id, (n, line) in later.first.items()}
    return pd.DataFrame(
        {
            "source": spec.name,
            _FILE: later.numbers,
            "file": [files[n].name for n in later.numbers],
            "line": later.lines,
            "reason": [f"duplicate {spec.id_column} (first at {where[i]})" for i in later.ids],
            "raw": [
                raw.get((int(n), int(line)), "")
                for n, line in zip(later.numbers, later.lines, strict=True)
            ],
        }
    )


def _raw_records(path: Path, lines: set[int]) -> dict[int, str]:
    """The CSV text of the records starting at the given physical lines (a rare second pass)."""
    found: dict[int, str] = {}
    with path.open(encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        next(reader, None)
        start = reader.line_num + 1
        for record in reader:
            if start in lines:
                found[start] = _as_csv(record)
                if len(found) == len(lines):
                    break
            start = reader.line_num + 1
    return found


def _read_header(path: Path) -> tuple[list[str], bool]:
    """The normalised column names, and whether any record follows the header (arrow refuses
    to skip a file's only line)."""
    with path.open("rb") as f:
        head = f.read(_HEAD)
    truncated = len(head) == _HEAD
    if head.startswith(BOM):
        head = head[len(BOM) :]
    if not head.strip():
        raise SourceError(path, "empty file: no header row")
    if b"\x00" in head:
        raise SourceError(path, "not a text file (NUL bytes): expected UTF-8 CSV")
    first, *rest = head.splitlines()
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SourceError(path, f"not UTF-8 text (byte 0x{first[e.start]:02x})", line=1) from e
    names = [n.strip().lower() for n in next(csv.reader([text]), [])]
    if not any(names):
        raise SourceError(path, "no header row (line 1 is blank)", line=1)
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise SourceError(path, "header names this column twice", column=name, line=1)
        seen.add(name)
    return names, truncated or bool(b"".join(rest).strip())


def _read_file(
    path: Path,
    spec: SourceSpec,
    known: Mapping[str, pa.Array],
    number: int,
    template: pd.DataFrame,
    on_block: Callable[[pa.Table], None] | None,
    shape: _KeptShape,
    ledger: _IdLedger,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The file's valid rows (the kept columns), and its row rejects."""
    names, has_records = _read_header(path)
    kept_parts, reject_parts, records = [], [], 0
    with _CountingFile(path) as counted:
        batches = _Batches(counted, path, names)
        for batch in batches if has_records else ():
            block = _parse_batch(batch, spec, known, records, template)
            valid = ~block.rejected
            if on_block is not None:
                on_block(block.valid_rows())
            kept_parts.append(shape.take(block.table, valid, block.codes))
            reject_parts.append(block.rejects)
            ledger.add(number, records, block.ids, valid)
            records += batch.num_rows
        counted.read_to_end()
    lines, broken = _record_lines(path, len(names), records, batches.wrong_width, counted)
    ledger.lines[number] = lines
    if not kept_parts:
        nothing = np.zeros(0, dtype=bool)
        no_codes = dict.fromkeys(shape.categories, np.zeros(0, dtype=np.int32))
        empty = pa.Table.from_pandas(template, preserve_index=False)
        kept_parts.append(shape.take(empty, nothing, no_codes))
    kept = pd.concat(kept_parts, ignore_index=True)
    rejects = pd.concat(reject_parts, ignore_index=True) if reject_parts else _no_rejects()
    rejects["line"] = _physical(lines, rejects["line"].to_numpy().astype("int64"))
    if broken:
        rejects = pd.concat(
            [
                rejects,
                pd.DataFrame(
                    {
                        "line": [line for line, _, _ in broken],
                        "reason": [reason for _, reason, _ in broken],
                        "raw": [text for _, _, text in broken],
                    }
                ),
            ],
            ignore_index=True,
        )
    rejects = rejects.assign(source=spec.name, file=path.name, **{_FILE: number})
    return kept, rejects[["source", _FILE, "file", "line", "reason", "raw"]]


class _CountingFile(io.FileIO):
    """The file as pyarrow reads it, counting line feeds and quotes on the way: mapping records
    to physical lines then needs no second pass. (Read through Python, arrow also buffers
    tens of MB ahead of the parse instead of hundreds.)"""

    def __init__(self, path: Path) -> None:
        super().__init__(path, "r")
        self.newlines, self.quotes, self.size, self.last = 0, 0, 0, b"\n"
        self.reads, self.parsed = 0, 0
        self.room = threading.Condition()

    def parsed_block(self) -> None:
        with self.room:
            self.parsed += 1
            self.room.notify_all()

    def read(self, size: int = -1) -> bytes:
        with self.room:
            self.room.wait_for(lambda: self.reads - self.parsed < _READ_AHEAD, timeout=1.0)
            self.reads += 1
        return self._counted(super().read(size))

    def read_to_end(self) -> None:
        """Count what arrow left unread (a file without records): nothing waits on a parse."""
        while self._counted(super().read(_CHUNK)):
            pass

    def _counted(self, data: bytes) -> bytes:
        if data:
            # numpy lets go of the GIL while it counts: the parse goes on meanwhile
            self.newlines += int(np.count_nonzero(np.frombuffer(data, np.uint8) == _LF))
            if b'"' in data:
                self.quotes += data.count(b'"')
            self.size += len(data)
            self.last = data[-1:]
        return data


class _Batches:
    """A file's records as text columns, block by block; rows of the wrong width are skipped
    and counted (their lines are found afterwards)."""

    def __init__(
        self,
        source: _CountingFile,
        path: Path,
        names: list[str],
        include: list[str] | None = None,
    ) -> None:
        self.source, self.path, self.names, self.wrong_width = source, path, names, 0
        self.include = include or []

    def _skip(self, row: pacsv.InvalidRow) -> str:
        self.wrong_width += 1
        return "skip"

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            reader = pacsv.open_csv(
                self.source,
                read_options=pacsv.ReadOptions(
                    skip_rows=1, column_names=self.names, block_size=_CHUNK
                ),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=self._skip
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types=dict.fromkeys(self.names, pa.string()),
                    include_columns=self.include,
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            for batch in reader:
                yield batch
                self.source.parsed_block()  # the caller is done with it: read on
        except pa.ArrowInvalid as e:
            if "utf8" in str(e).lower():
                line = _first_non_utf8_line(self.path)
                raise SourceError(self.path, "not UTF-8 text", line=line) from e
            raise SourceError(self.path, f"not parseable as CSV ({e})") from e


@dataclass(frozen=True)
class _Block:
    table: pa.Table  # every row of the block, typed, in source_template's layout
    rejected: np.ndarray
    rejects: pd.DataFrame  # `line` holds record ordinals until the file is mapped
    codes: dict[str, np.ndarray]  # referencing column -> index into the referenced ids
    ids: pa.Array  # the id column's trimmed text

    def valid_rows(self) -> pa.Table:
        return self.table.filter(pa.array(~self.rejected)) if self.rejected.any() else self.table


def _parse_batch(
    batch: pa.RecordBatch,
    spec: SourceSpec,
    known: Mapping[str, pa.Array],
    offset: int,
    template: pd.DataFrame,
) -> _Block:
    """One parsed block typed and checked row by row."""
    names = batch.schema.names
    text = {name: pc.utf8_trim_whitespace(batch.column(name)) for name in names}
    problems = _Problems(batch.num_rows)
    typed: dict[str, pa.Array] = {}
    for col in spec.columns:
        if col.name in text:
            typed[col.name] = _parse_column(col, text[col.name], problems)
        else:
            typed[col.name] = pa.nulls(batch.num_rows, _ARROW_TYPES[col.kind])
    codes: dict[str, np.ndarray] = {}
    for col in spec.columns:
        if col.references in known:
            found = pc.index_in(typed[col.name], value_set=known[col.references])
            codes[col.name] = found.fill_null(-1).to_numpy().astype(np.int32, copy=False)
            problems.add(
                typed[col.name].is_valid().to_numpy(zero_copy_only=False) & (codes[col.name] < 0),
                f"unknown {col.name}",
                text.get(col.name),
            )
        if col.not_before:
            early = pc.less(typed[col.name], typed[col.not_before]).fill_null(False)
            problems.add(
                early.to_numpy(zero_copy_only=False), f"{col.name} before {col.not_before}"
            )
    for name in names:
        if spec.column(name) is None:  # extra columns are kept as optional text
            typed[name] = _parse_column(Column(name, "text"), text[name], problems)
    rejected = problems.mask()
    rows = np.flatnonzero(rejected)
    rejects = pd.DataFrame(
        {
            "line": np.arange(offset, offset + batch.num_rows, dtype=np.int64)[rows],
            "reason": problems.reasons(rows),
            "raw": [
                _as_csv(values)
                for values in zip(
                    *(batch.column(n).take(rows).to_pylist() for n in names), strict=True
                )
            ]
            if len(rows)
            else [],
        }
    )
    table = pa.table(
        {name: typed.get(name, pa.nulls(batch.num_rows, pa.string())) for name in template.columns}
    )
    return _Block(table, rejected, rejects, codes, text[spec.id_column])


def _record_lines(
    path: Path, n_fields: int, n_valid: int, n_invalid: int, counted: _CountingFile
) -> tuple[np.ndarray | None, list[tuple[int, str, str]]]:
    """Physical line of each parsed record (by ordinal; None: record n is on line n + 2), and
    the wrong-width records.

    The common file (one record per line, no blank lines, balanced quotes) is
    recognised by counting bytes; anything else is walked with the csv module,
    which also catches a quoted field left open at the end of a truncated file.
    """
    physical = counted.newlines + (1 if counted.size and counted.last != b"\n" else 0)
    if n_invalid == 0 and physical == n_valid + 1 and counted.quotes % 2 == 0:
        return None, []
    valid: list[int] = []
    wrong: list[tuple[int, str, str]] = []
    # Universal newlines: line_num then counts LF, CRLF and bare-CR lines alike.
    with path.open(encoding="utf-8-sig") as f:
        reader = csv.reader(f, strict=True)
        next(reader, None)
        start = reader.line_num + 1
        try:
            for record in reader:
                if len(record) == n_fields:
                    valid.append(start)
                elif record:
                    reason = f"expected {n_fields} fields, found {len(record)}"
                    wrong.append((start, reason, _as_csv(record)))
                start = reader.line_num + 1
        except csv.Error as e:
            raise SourceError(path, f"not parseable as CSV ({e})", line=start) from e
    if len(valid) != n_valid:  # the two parsers disagree: fall back to record order
        return None, wrong
    return np.asarray(valid, dtype=np.int64), wrong


def _physical(lines: np.ndarray | None, ordinals: np.ndarray) -> np.ndarray:
    """Physical lines of records by ordinal; None: one record per line after the header."""
    return ordinals + 2 if lines is None else lines[ordinals]


def _first_non_utf8_line(path: Path) -> int | None:
    line = 1
    with path.open("rb") as f:
        for raw in f:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                return line
            line += 1
    return None


def _as_csv(values: list[str]) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(values)
    return out.getvalue()


class _Problems:
    """(rows, reasons) found in one block; reason strings are built for bad rows only."""

    def __init__(self, n_rows: int) -> None:
        self.n_rows = n_rows
        self.found: list[tuple[np.ndarray, list[str]]] = []

    def add(self, mask: np.ndarray, reason: str, values: pa.Array | None = None) -> None:
        rows = np.flatnonzero(mask)
        if not len(rows):
            return
        if values is None:
            self.found.append((rows, [reason] * len(rows)))
        else:
            bad = values.take(pa.array(rows)).to_pylist()
            self.found.append((rows, [f"{reason} '{v}'" for v in bad]))

    def mask(self) -> np.ndarray:
        hit = np.zeros(self.n_rows, dtype=bool)
        for rows, _ in self.found:
            hit[rows] = True
        return hit

    def reasons(self, rows: np.ndarray) -> list[str]:
        by_row: dict[int, list[str]] = defaultdict(list)
        for found_rows, texts in self.found:
            for row, text in zip(found_rows.tolist(), texts, strict=True):
                by_row[row].append(text)
        return ["; ".join(by_row[row]) for row in rows.tolist()]


def _parse_column(col: Column, text: pa.Array, problems: _Problems) -> pa.Array:
    """Typed values of one column; every unparseable or out-of-range value is a problem."""
    is_missing = pc.equal(text, "")
    missing = is_missing.to_numpy(zero_copy_only=False)
    if col.required:
        problems.add(missing, f"missing {col.name}")
    values = pc.if_else(is_missing, None, text)
    if col.kind == "text":
        return values
    if col.kind in ("date", "timestamp"):
        parsed = parse_timestamps(values)
        unparsed = ~missing & parsed.is_null().to_numpy(zero_copy_only=False)
        problems.add(unparsed, f"unparseable {col.name}", text)
        if col.kind == "timestamp":
            return parsed
        return pc.floor_temporal(parsed, unit="day").cast(pa.date32())
    number = _parse_numbers(values)
    problems.add(~missing & np.isnan(number), f"unparseable {col.name}", text)
    infinite = np.isinf(number)
    problems.add(infinite, f"{col.name} is not a finite number", text)
    finite = np.where(infinite, np.nan, number)
    if col.kind == "money":
        problems.add(finite < 0, f"negative {col.name}", text)
        return pa.array(finite, pa.float64(), from_pandas=True)
    known = ~np.isnan(finite)
    whole = known & (np.mod(finite, 1, where=known, out=np.zeros_like(finite)) == 0)
    problems.add(known & ~whole, f"{col.name} is not a whole number", text)
    low = (finite <= 0) if col.positive else (finite < 0)
    problems.add(whole & low, f"{col.name} must be {'> 0' if col.positive else '>= 0'}", text)
    return pa.array(np.where(whole, finite, np.nan), pa.float64(), from_pandas=True).cast(
        pa.int64()
    )


def _parse_numbers(values: pa.Array) -> np.ndarray:
    """Decimal text -> float64, NaN where missing or unparseable (arrow first, pandas if needed)."""
    try:
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid:
        return pd.to_numeric(values.to_pandas(), errors="coerce").to_numpy(dtype="float64")


_ARROW_TYPES = {
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
    "money": pa.float64(),
    "count": pa.int64(),
}
# How typed Arrow columns become the template's pandas dtypes (floats and timestamps convert
# as they are).
_PANDAS_TYPES = {
    pa.string(): pd.Series(dtype="str").dtype,
    pa.date32(): DATE_DTYPE,
    pa.int64(): pd.Int64Dtype(),
}


def _empty(kind: Kind) -> pd.Series:
    """An empty column of a kind, with the dtype its loaded values get (the same mapping)."""
    return pa.chunked_array([], _ARROW_TYPES[kind]).to_pandas(types_mapper=_PANDAS_TYPES.get)


def _no_rejects() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "line": pd.Series(dtype="int64"),
            "reason": pd.Series(dtype="str"),
            "raw": pd.Series(dtype="str"),
        }
    )
