"""A source's CSV drops -> one typed frame, plus the rows it rejected and why.

Structural problems (no file, no header, missing column, not UTF-8, not CSV)
raise `SourceError`; row problems never do: they become rows of the rejects
frame, each with its file, physical line, reason and raw text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from .dates import DATE_DTYPE, parse_timestamps, to_date32
from .sources import Column, SourceSpec

BOM = b"\xef\xbb\xbf"
REJECT_COLUMNS = ["source", "file", "line", "reason", "raw"]
_FILE, _LINE = "__file", "__line"
_CHUNK = 16 << 20


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

    @property
    def rows_read(self) -> int:
        return len(self.frame) + len(self.rejects)

    @property
    def reject_fraction(self) -> float:
        return len(self.rejects) / self.rows_read if self.rows_read else 0.0


def source_files(data_dir: Path, name: str) -> list[Path]:
    """`NAME.csv` and every `NAME_*.csv` drop, in file-name order."""
    if not data_dir.is_dir():
        raise SourceError(data_dir, "data folder does not exist")
    found = [
        p
        for p in data_dir.iterdir()
        if p.is_file()
        and p.suffix == ".csv"
        and (p.name == f"{name}.csv" or p.name.startswith(f"{name}_"))
    ]
    return sorted(found, key=lambda p: p.name)


def load_source(
    spec: SourceSpec, files: list[Path], known_ids: Mapping[str, pd.Series] | None = None
) -> LoadedSource:
    """Read and validate every drop of one source; `known_ids` holds the referenced sources' ids."""
    if not files:
        raise SourceError(f"{spec.name}.csv", "missing file: no CSV for this source was found")
    parts = [_read_file(path, spec) for path in files]
    raw = pd.concat([rows for rows, _ in parts], ignore_index=True)
    frame, rejects = _validate(raw, spec, known_ids or {})
    broken = [b for _, b in parts if len(b)]
    if broken:
        rejects = pd.concat([rejects, *broken], ignore_index=True)
        order = rejects["file"].map({p.name: i for i, p in enumerate(files)})
        rejects = rejects.assign(_order=order).sort_values(["_order", "line"], kind="stable")
        rejects = rejects.drop(columns="_order").reset_index(drop=True)
    return LoadedSource(frame, rejects, list(files))


def _read_header(path: Path) -> list[str]:
    with path.open("rb") as f:
        head = f.read(1 << 20)
    if head.startswith(BOM):
        head = head[len(BOM) :]
    if not head.strip():
        raise SourceError(path, "empty file: no header row")
    if b"\x00" in head:
        raise SourceError(path, "not a text file (NUL bytes): expected UTF-8 CSV")
    first = head.splitlines()[0]
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
    return names


def _read_file(path: Path, spec: SourceSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The file's records as text (plus file name and line), and its wrong-width records."""
    names = _read_header(path)
    for required in spec.required:
        if required not in names:
            raise SourceError(path, "missing required column", column=required, line=1)
    if _header_only(path):
        empty = pd.DataFrame({name: pd.Series(dtype="str") for name in names})
        empty[_FILE], empty[_LINE] = path.name, pd.Series(dtype="int64")
        return empty, pd.DataFrame(columns=REJECT_COLUMNS)
    bad_rows: list[str] = []

    def skip_invalid(row: pacsv.InvalidRow) -> str:
        bad_rows.append(row.text)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(skip_rows=1, column_names=names, block_size=_CHUNK),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=skip_invalid
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as e:
        if "UTF8" in str(e) or "utf8" in str(e).lower():
            line = _first_non_utf8_line(path)
            raise SourceError(path, "not UTF-8 text", line=line) from e
        raise SourceError(path, f"not parseable as CSV ({e})") from e
    frame = table.to_pandas()
    lines, wrong_width = _record_lines(path, len(names), table.num_rows, len(bad_rows))
    frame[_FILE] = path.name
    frame[_LINE] = lines
    broken = pd.DataFrame(
        {
            "source": spec.name,
            "file": path.name,
            "line": pd.Series([line for line, _, _ in wrong_width], dtype="int64"),
            "reason": [reason for _, reason, _ in wrong_width],
            "raw": [text for _, _, text in wrong_width],
        },
        columns=REJECT_COLUMNS,
    )
    return frame, broken


def _header_only(path: Path) -> bool:
    """A file with a header and nothing after it (arrow refuses to skip its only line)."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
    if len(head) == 1 << 20:
        return False
    return not b"".join(head.splitlines()[1:]).strip()


def _record_lines(
    path: Path, n_fields: int, n_valid: int, n_invalid: int
) -> tuple[np.ndarray, list[tuple[int, str, str]]]:
    """Physical line of each parsed record, and the records with the wrong field count.

    The common file (one record per line, no blank lines, balanced quotes) is
    recognised by counting bytes; anything else is walked with the csv module,
    which also catches a quoted field left open at the end of a truncated file.
    """
    newlines, quotes, size, last = 0, 0, 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            newlines += chunk.count(b"\n")
            quotes += chunk.count(b'"')
            size += len(chunk)
            last = chunk[-1:]
    physical = newlines + (1 if size and last != b"\n" else 0)
    if n_invalid == 0 and physical == n_valid + 1 and quotes % 2 == 0:
        return np.arange(2, n_valid + 2, dtype=np.int64), []
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
        return np.arange(2, n_valid + 2, dtype=np.int64), wrong
    return np.asarray(valid, dtype=np.int64), wrong


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
    """Collects (row mask, reason) pairs and joins them into one reason per rejected row."""

    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self.found: list[pd.Series] = []

    def add(self, mask: pd.Series, reason: str | pd.Series) -> None:
        if not mask.any():
            return
        if isinstance(reason, str):
            self.found.append(pd.Series(reason, index=self.index[mask.to_numpy()], dtype=object))
        else:
            self.found.append(reason[mask].astype(object))

    def mask(self) -> np.ndarray:
        hit = np.zeros(len(self.index), dtype=bool)
        for reasons in self.found:
            hit[self.index.get_indexer(reasons.index)] = True
        return hit

    def reasons(self) -> pd.Series:
        if not self.found:
            return pd.Series(dtype=object)
        joined = pd.concat(self.found)
        return joined.groupby(level=0, sort=True).agg("; ".join)


def _parse_column(col: Column, text: pd.Series, problems: _Problems) -> pd.Series:
    """Typed values of one column; every unparseable or out-of-range value is a problem."""
    missing = text == ""
    if col.required:
        problems.add(missing, f"missing {col.name}")
    if col.kind == "text":
        return text.where(~missing)
    if col.kind in ("date", "timestamp"):
        parsed = parse_timestamps(text.where(~missing))
        problems.add(~missing & parsed.isna(), f"unparseable {col.name} '" + text + "'")
        return to_date32(parsed) if col.kind == "date" else parsed
    number = pd.to_numeric(text.where(~missing), errors="coerce").astype("float64")
    bad = ~missing & number.isna()
    problems.add(bad, f"unparseable {col.name} '" + text + "'")
    infinite = np.isinf(number)
    problems.add(infinite, f"{col.name} is not a finite number '" + text + "'")
    finite = number.where(~infinite)
    if col.kind == "money":
        problems.add(finite < 0, f"negative {col.name} '" + text + "'")
        return finite
    whole = finite.notna() & (finite % 1 == 0)
    problems.add(finite.notna() & ~whole, f"{col.name} is not a whole number '" + text + "'")
    low = (finite <= 0) if col.positive else (finite < 0)
    problems.add(whole & low, f"{col.name} must be {'> 0' if col.positive else '>= 0'}")
    return finite.where(whole).astype("Int64")


def _validate(
    raw: pd.DataFrame, spec: SourceSpec, known_ids: Mapping[str, pd.Series]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    problems = _Problems(raw.index)
    data_columns = [c for c in raw.columns if not c.startswith("__")]
    text = {c: raw[c].fillna("").astype(str).str.strip() for c in data_columns}
    typed: dict[str, pd.Series] = {}
    for col in spec.columns:
        if col.name in text:
            typed[col.name] = _parse_column(col, text[col.name], problems)
        else:
            typed[col.name] = _empty(col, raw.index)
    for col in spec.columns:
        if col.references and col.references in known_ids and col.name in text:
            value = typed[col.name]
            unknown = value.notna() & ~value.isin(known_ids[col.references])
            problems.add(unknown, f"unknown {col.name} '" + text[col.name] + "'")
        if col.not_before:
            early = typed[col.name] < typed[col.not_before]
            problems.add(early.fillna(False), f"{col.name} before {col.not_before}")
    rejected = problems.mask()
    ids = typed[spec.id_column]
    candidates = ~rejected & ids.notna().to_numpy()
    duplicate = np.zeros(len(raw), dtype=bool)
    duplicate[candidates] = ids[candidates].duplicated(keep="first").to_numpy()
    if duplicate.any():
        first = (
            pd.DataFrame(
                {"id": ids[candidates], "at": raw[_FILE] + " line " + raw[_LINE].astype(str)}
            )
            .drop_duplicates("id")
            .set_index("id")["at"]
        )
        dup = pd.Series(duplicate, index=raw.index)
        reason = f"duplicate {spec.id_column} (first at " + ids.map(first).fillna("") + ")"
        problems.add(dup, reason)
    rejected = problems.mask()

    extras = [c for c in data_columns if spec.column(c) is None]
    frame = pd.DataFrame(typed | {c: text[c].where(text[c] != "") for c in extras})
    frame = frame.loc[~rejected].reset_index(drop=True)
    rejects = pd.DataFrame(
        {
            "source": spec.name,
            "file": raw.loc[rejected, _FILE].astype(str),
            "line": raw.loc[rejected, _LINE].astype("int64"),
            "reason": problems.reasons().reindex(raw.index[rejected]).astype(str),
            "raw": _raw_text(raw.loc[rejected], data_columns),
        },
        columns=REJECT_COLUMNS,
    ).reset_index(drop=True)
    return frame, rejects


def _raw_text(rows: pd.DataFrame, columns: list[str]) -> pd.Series:
    """Each rejected row as CSV text (fields re-quoted as needed; absent columns left out)."""
    texts = [
        _as_csv([v for v in values if isinstance(v, str)])
        for values in rows[columns].itertuples(index=False)
    ]
    return pd.Series(texts, index=rows.index, dtype=str)


def _empty(col: Column, index: pd.Index) -> pd.Series:
    """An all-null column of the right type, so an absent optional column keeps the schema."""
    dtype = {
        "text": "str",
        "date": DATE_DTYPE,
        "timestamp": "datetime64[us]",
        "money": "float64",
        "count": "Int64",
    }[col.kind]
    return pd.Series(pd.NA if col.kind == "count" else None, index=index, dtype=dtype)
