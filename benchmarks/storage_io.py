"""Benchmark: write_table / read_table of a large attendance-like frame against the server's COPY.

    .venv/bin/python benchmarks/storage_io.py --rows 14000000

Builds the frame in memory (vectorised, a few seconds for 14M rows), then alternates, --reps
times each: write_table, read_table, the server's own ``COPY ... FROM '<file>'`` of the same
rows as CSV (the floor the pipeline is measured against: no client work, no network) and
``COPY ... TO '<file>'``. The server must run on this machine, to read the file from /tmp; the
--schema is dropped and recreated. Prints median wall times, their ratios to the server's COPY,
how far each operation raised this process's RSS above its level when it started, and the
process's peak RSS next to the size of the frame it holds throughout.
"""

import argparse
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
from psycopg2 import sql

from retention_assets.storage.database import connect
from retention_assets.storage.tables import read_table, write_table

CLUBS = ["Downtown", "Harbourview", "Northgate", "Riverside", "Westfield"]
VISITS_PER_CUSTOMER = 14
SLICE_ROWS = 1_000_000
DDL = "attendance_id text, customer_id text, check_in timestamp, check_out timestamp, club text"


def fixed_ids(prefix: str, numbers: np.ndarray, digits: int) -> pd.Series:
    """``prefix`` + zero-padded ``numbers`` as a str column, built as one byte matrix (no
    per-value Python work, which would take longer than the benchmark itself at 14M rows)."""
    width = len(prefix) + digits
    chars = np.empty((len(numbers), width), np.uint8)
    chars[:, : len(prefix)] = np.frombuffer(prefix.encode(), np.uint8)
    rest = numbers.astype(np.int64)
    for position in range(width - 1, len(prefix) - 1, -1):
        rest, digit = np.divmod(rest, 10)
        chars[:, position] = digit + ord("0")
    offsets = np.arange(0, width * len(numbers) + 1, width, dtype=np.int64)
    array = pa.LargeStringArray.from_buffers(
        len(numbers), pa.py_buffer(offsets), pa.py_buffer(chars.reshape(-1))
    )
    return pd.Series(array.to_pandas(), dtype="str")


def attendance_frame(rows: int, seed: int = 0) -> pd.DataFrame:
    """Same shape as the loader's attendance frame: ids sorted by customer, 3% still checked in."""
    rng = np.random.default_rng(seed)
    customers = np.sort(rng.integers(1, max(2, rows // VISITS_PER_CUSTOMER), rows))
    start = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
    check_in = start + rng.integers(0, 3 * 365 * 86_400, rows)
    check_out = (check_in + rng.integers(20 * 60, 150 * 60, rows)).astype("datetime64[s]")
    check_out[rng.random(rows) < 0.03] = np.datetime64("NaT")
    clubs = pd.Categorical.from_codes(rng.integers(0, len(CLUBS), rows), CLUBS)
    return pd.DataFrame(
        {
            "attendance_id": fixed_ids("A", np.arange(1, rows + 1), 10),
            "customer_id": fixed_ids("C", customers, 7),
            "check_in": check_in.astype("datetime64[s]").astype("datetime64[us]"),
            "check_out": check_out.astype("datetime64[us]"),
            "club": pd.Series(clubs).astype("str"),
        }
    )


def write_floor_csv(df: pd.DataFrame, path: Path) -> None:
    """The rows as a source export holds them (whole seconds), for the server to read; written
    a slice at a time so the file adds no frame-sized copy to this process's memory."""
    schema = pa.Schema.from_pandas(df, preserve_index=False)
    seconds = pa.schema(
        [
            field.with_type(pa.timestamp("s")) if pa.types.is_timestamp(field.type) else field
            for field in schema
        ]
    )
    options = pacsv.WriteOptions(include_header=False)
    with pacsv.CSVWriter(str(path), seconds, write_options=options) as writer:
        for start in range(0, len(df), SLICE_ROWS):
            part = df.iloc[start : start + SLICE_ROWS]
            writer.write_table(pa.Table.from_pandas(part, preserve_index=False).cast(seconds))
    path.chmod(0o644)


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds of ``action`` and how many MB it raised RSS above the level it started at
    (sampled every 10 ms, so short spikes may be missed)."""
    process = psutil.Process()
    start_rss = process.memory_info().rss
    peak, done = [start_rss], threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    try:
        action()
    finally:
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
    peak[0] = max(peak[0], process.memory_info().rss)
    return seconds, (peak[0] - start_rss) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    parser.add_argument("--schema", default="bench_storage_io")
    args = parser.parse_args()

    started = time.perf_counter()
    df = attendance_frame(args.rows)
    frame_mb = df.memory_usage(deep=True).sum() / 2**20
    print(
        f"{len(df):,} rows, {frame_mb:,.0f} MB in memory, built in "
        f"{time.perf_counter() - started:.1f} s"
    )

    conn = connect(args.url)
    conn.autocommit = True
    schema = sql.Identifier(args.schema)
    floor = sql.Identifier(args.schema, "attendance_floor")
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(schema))
    # The server reads and writes the file itself, so it must be in a folder it can enter.
    folder = Path(tempfile.mkdtemp(prefix="storage_io_"))
    folder.chmod(0o777)
    csv_path = folder / "attendance.csv"
    write_floor_csv(df, csv_path)
    csv_mb = csv_path.stat().st_size / 2**20

    def copy_from_file() -> None:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(floor))
            cur.execute("BEGIN")
            cur.execute(sql.SQL("CREATE TABLE {} ({})").format(floor, sql.SQL(DDL)))
            cur.execute(
                sql.SQL("COPY {} FROM {} WITH (FORMAT csv)").format(
                    floor, sql.Literal(str(csv_path))
                )
            )
            cur.execute("COMMIT")

    def copy_to_file() -> None:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("COPY {} TO {} WITH (FORMAT csv)").format(
                    floor, sql.Literal(str(folder / "out.csv"))
                )
            )

    actions = {
        "write_table": lambda: write_table(conn, args.schema, "attendance", df),
        "read_table": lambda: read_table(conn, args.schema, "attendance"),
        "COPY FROM file": copy_from_file,
        "COPY TO file": copy_to_file,
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in actions}
    try:
        for _ in range(args.reps):
            for name, action in actions.items():
                runs[name].append(timed(action))
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        assert read_table(conn, args.schema, "attendance").equals(df), "round trip changed the rows"
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
        with conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(schema))
        conn.close()

    seconds = {name: statistics.median(t for t, _ in values) for name, values in runs.items()}
    print(f"CSV of the same rows: {csv_mb:,.0f} MB; medians of {args.reps} runs")
    print(f"{'operation':<16}{'seconds':>9}{'rows/s':>13}{'vs server':>11}{'+RSS MB':>9}")
    for name, floor_name in [
        ("write_table", "COPY FROM file"),
        ("COPY FROM file", "COPY FROM file"),
        ("read_table", "COPY TO file"),
        ("COPY TO file", "COPY TO file"),
    ]:
        rss = max(mb for _, mb in runs[name])
        print(
            f"{name:<16}{seconds[name]:>9.2f}{len(df) / seconds[name]:>13,.0f}"
            f"{seconds[name] / seconds[floor_name]:>10.2f}x{rss:>9,.0f}"
        )
    print(f"peak RSS of the process: {peak_mb:,.0f} MB, of which the frame: {frame_mb:,.0f} MB")


if __name__ == "__main__":
    main()
