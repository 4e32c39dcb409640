"""Benchmark: the naive pandas script, the bare `psql \\copy` floor and our graph, in one run.

    .venv/bin/python benchmarks/run.py --tier M        # S: 2k, M: 100k, L: 1M customers
    .venv/bin/python benchmarks/run.py --tier S --id-shapes padded int uuid
    .venv/bin/python benchmarks/run.py --tier M --scenario drops --id-shape int
    .venv/bin/python benchmarks/run.py --tier M --scenario history --id-shape int

Generates (or reuses) the tier's data in each id shape asked for (padded C0000001, int 1..N,
uuid), as real exports differ and sorted padded ids hide costs. --scenario full (default) runs
the four alternately, --reps times each, and prints a table (wall time, peak RSS of the process
tree, rows/s, per-asset times, the ratios of the issue's targets); the same figures go to
benchmarks/out/<tier>[-<shape>].json. --scenario drops loads the history without its last day,
then times `retention-assets run` as that day's drop arrives, is replaced by a changed copy and
is removed (see drops.py), to benchmarks/out/<tier>[-<shape>]-drops.json; with --cold (root) the
OS page cache is emptied before each of those runs, as a large history is read from disk.
--scenario history
loads the data into a fresh database with one `retention-assets run` (its wall and peak RSS
reported too), then times `retention-assets run --history 3` (this script's --history N for
another N: N analytics runs, one per monthly snapshot, nothing to load) and prints, per step,
the time of each snapshot, their median and the full build's, each run's wall and peak RSS
(does memory grow with the history kept?), the rows of cohort_retention, rfm_history and
segment_migration, and the parts of the history assets timed apart (SQL, upsert, pandas,
figures; see history.py); the same figures go to benchmarks/out/<tier>[-<shape>]-history.json,
and the database is dropped.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import drops
import history
import psutil
import psycopg2
from sqlalchemy.engine import make_url

from retention_assets.generate import ID_SHAPES

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
TIERS = {"S": 2_000, "M": 100_000, "L": 1_000_000}
SOURCES = ("customers", "packages", "transactions", "attendance")
BIN = Path(sys.executable).parent
GRAPH_SCHEMA = "bench_graph"
DROP_CACHES = Path("/proc/sys/vm/drop_caches")

FLOOR_SQL = """
DROP SCHEMA IF EXISTS bench_floor CASCADE;
CREATE SCHEMA bench_floor;
SET search_path = bench_floor;
CREATE TABLE customers (customer_id text, first_name text, last_name text, email text,
    gender text, date_of_birth date, signup_date date, home_club text);
CREATE TABLE packages (package_id text, package_name text, price numeric,
    duration_days bigint, sessions_included bigint);
CREATE TABLE transactions (transaction_id text, customer_id text, transaction_date timestamp,
    amount numeric, package_id text, payment_method text);
CREATE TABLE attendance (attendance_id text, customer_id text, check_in timestamp,
    check_out timestamp, club text);
"""
FLOOR_COPY = "\\copy {table} FROM '{path}' WITH (FORMAT csv, HEADER)\n"


def measure(cmd: list[str], env: dict[str, str] | None = None, timeline: bool = False) -> dict:
    """Wall time, peak RSS summed over the process tree (sampled every 50 ms) and stdout.
    `timeline`: also "lines", each stdout line with the seconds since the start it was read
    at, and "rss_samples", (seconds, MB) of every sample, for runs to be told apart."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    peak, done = [0], threading.Event()
    samples: list[tuple[float, float]] = []

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                rss = sum(p.memory_info().rss for p in tree)
                peak[0] = max(peak[0], rss)
                if timeline:
                    samples.append((time.perf_counter() - started, rss / 2**20))
            except psutil.Error:
                pass
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines: list[tuple[float, str]] = []
    if timeline:  # read stdout as it comes; stderr in a thread, so neither pipe fills up
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
        reader.start()
        lines = [(time.perf_counter() - started, line) for line in proc.stdout]
        proc.wait()
        reader.join()
        stdout, stderr = "".join(line for _, line in lines), "".join(errors)
    else:
        stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    result = {"wall": wall, "peak_rss_mb": peak[0] / 2**20, "stdout": stdout}
    if timeline:
        result |= {"lines": lines, "rss_samples": samples}
    return result


def stem(tier: str, shape: str) -> str:
    """Name of a tier+shape's cached data and results; padded keeps the names it had."""
    return tier if shape == "padded" else f"{tier}-{shape}"


def prepare_data(tier: str, shape: str = "padded") -> tuple[Path, int]:
    data = OUT / f"data-{stem(tier, shape)}"
    marker = data / ".complete"
    if not marker.exists():
        print(
            f"generating tier {tier} ({TIERS[tier]:,} customers, {shape} ids) into {data} ...",
            flush=True,
        )
        subprocess.run(
            [
                *(BIN / "retention-assets", "generate", "--customers", str(TIERS[tier])),
                *("--id-shape", shape, "--out", data),
            ],
            check=True,
        )
        marker.touch()
    return data, sum(count_rows(data / f"{name}.csv") for name in SOURCES)


def count_rows(path: Path) -> int:
    """Data rows of a CSV (lines after the header)."""
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b"")) - 1


def run_script(script: str, data: Path, url: str) -> dict:
    """A benchmark script that prints its phase timings as JSON on its last line."""
    result = measure([sys.executable, f"benchmarks/{script}", "--data", str(data), "--url", url])
    result["phases"] = json.loads(result["stdout"].strip().splitlines()[-1])["timings"]
    return result


def run_naive(data: Path, url: str) -> dict:
    return run_script("naive_baseline.py", data, url)


def run_floor(data: Path, url: str, files: dict[str, Path] | None = None) -> dict:
    """`psql \\copy` of `files` (table -> CSV; default: data's four) into fresh text tables."""
    files = files or {name: data / f"{name}.csv" for name in SOURCES}
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(FLOOR_SQL)
        f.writelines(FLOOR_COPY.format(table=t, path=path) for t, path in files.items())
    u = make_url(url)
    cmd = [
        "psql",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        u.host or "127.0.0.1",
        "-p",
        str(u.port or 5432),
        "-U",
        u.username or "postgres",
        "-d",
        u.database,
        "-f",
        f.name,
    ]
    try:
        return measure(cmd)
    finally:
        os.unlink(f.name)


def run_graph(
    data: Path, url: str, extra: tuple[str, ...] = (), schema: str = GRAPH_SCHEMA, **kw: bool
) -> dict:
    """`retention-assets run` on `data`: it loads only the files new or changed since the
    last run into `url` (all of them into an empty schema). A step that runs more than once
    (one run per range of drop files, or per --history snapshot) counts with its total time;
    `plan` is what `run` said it would do ("1 file(s) to load, 0 to remove"), to show a
    scenario did what it meant. `extra`: further options of `run`; `kw`: to measure()."""
    env = os.environ | {"DATABASE_URL": url, "RETENTION_DB_SCHEMA": schema}
    env.pop("DAGSTER_HOME", None)
    result = measure(
        [str(BIN / "retention-assets"), "run", "--data-dir", str(data), *extra], env, **kw
    )
    steps: dict[str, float] = {}
    for line in result["stdout"].splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[1:3] == ["done", "in"]:
            steps[parts[0]] = steps.get(parts[0], 0.0) + float(parts[3])
        elif " file(s) to load" in line:
            result["plan"] = line.rsplit(": ", 1)[-1]
    result["phases"] = steps
    return result


def run_graph_full(data: Path, url: str) -> dict:
    """The graph's full build: into an empty schema, as `run` would otherwise load nothing
    the second time round."""
    drop_schema(url, GRAPH_SCHEMA)
    return run_graph(data, url)


def run_analytics(data: Path, url: str) -> dict:
    return run_script("analytics_only.py", data, url)


def _execute(url: str, *statements: str) -> None:
    conn = psycopg2.connect(
        make_url(url).render_as_string(hide_password=False).replace("+psycopg2", "")
    )
    conn.autocommit = True
    with conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)
    conn.close()


def fresh_database(admin_url: str, name: str) -> str:
    _execute(
        admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'
    )
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_schema(url: str, schema: str) -> None:
    _execute(url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tier", choices=TIERS, default="S")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument(
        "--id-shape",
        "--id-shapes",
        dest="id_shapes",
        nargs="+",
        choices=ID_SHAPES,
        default=["padded"],
        help="id shape(s) of the generated data, each benchmarked in turn (default: padded)",
    )
    parser.add_argument("--scenario", choices=["full", "drops", "history"], default="full")
    parser.add_argument(
        "--history",
        type=int,
        default=HISTORY_SNAPSHOTS,
        metavar="N",
        help=f"history only: the snapshots of the timed run (default {HISTORY_SNAPSHOTS})",
    )
    parser.add_argument(
        "--only", nargs="*", choices=["naive", "floor", "graph", "analytics"], help="full only"
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "RETENTION_TEST_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--cold",
        action="store_true",
        help="drops only: empty the OS page cache before each run after the full build "
        "(root; PostgreSQL's own shared buffers stay), as when the history no longer fits "
        "in memory",
    )
    args = parser.parse_args()
    if args.only and args.scenario != "full":
        parser.error("--only applies to --scenario full")
    if args.cold and (args.scenario != "drops" or not DROP_CACHES.exists() or os.geteuid()):
        parser.error(f"--cold applies to --scenario drops, run as root (writes {DROP_CACHES})")
    OUT.mkdir(parents=True, exist_ok=True)
    for shape in dict.fromkeys(args.id_shapes):
        data, rows = prepare_data(args.tier, shape)
        if args.scenario == "full":
            bench_full(args.tier, shape, data, rows, args)
        elif args.scenario == "drops":
            bench_drops(args.tier, shape, data, args)
        else:
            bench_history(args.tier, shape, data, rows, args)


def bench_full(tier: str, shape: str, data: Path, rows: int, args: argparse.Namespace) -> None:
    url = fresh_database(args.admin_url, "retention_bench")
    runners = {
        "naive": run_naive,
        "floor": run_floor,
        "graph": run_graph_full,
        "analytics": run_analytics,
    }
    chosen = args.only or list(runners)
    results: dict[str, list[dict]] = {name: [] for name in chosen}
    for rep in range(args.reps):
        for name in chosen:
            result = runners[name](data, url)
            result.pop("stdout")
            results[name].append(result)
            print(
                f"rep {rep + 1}/{args.reps} {name:<9} {result['wall']:7.1f} s  "
                f"{result['peak_rss_mb']:7.0f} MB",
                flush=True,
            )
    report = summarise(tier, rows, results)
    (OUT / f"{stem(tier, shape)}.json").write_text(
        json.dumps(
            {"tier": tier, "id_shape": shape, "rows": rows, "runs": results, "summary": report},
            indent=2,
        )
    )
    print_table(f"{tier} ({shape} ids)", rows, results, report)


COPY_S = "\\copy s"  # f-strings take no backslash before Python 3.12
DROP_STEPS = ("full build", "one-day drop", "replaced file", "removed file")


def bench_drops(tier: str, shape: str, data: Path, args: argparse.Namespace) -> None:
    """Per rep, on an empty database: load base/ (full build); copy the day's drop files in
    and run (+ the \\copy floor of the same files); replace the day's attendance file by a
    changed copy and run; remove the day's transactions file and run."""
    folders = drops.build_drop_folders(data, OUT / f"drops-{stem(tier, shape)}")
    drop_files = folders.drop_files()
    drop_rows = {source: count_rows(path) for source, path in drop_files.items()}
    work = folders.root / "work"
    results: dict[str, list[dict]] = {name: [] for name in (*DROP_STEPS, "floor")}

    def timed(rep: int, name: str, runner: Callable[..., dict], *run_args: object) -> None:
        if args.cold and name != "full build":
            os.sync()
            DROP_CACHES.write_text("3\n")
        result = runner(*run_args)
        result.pop("stdout")
        results[name].append(result)
        print(
            f"rep {rep + 1}/{args.reps} {name:<14} {result['wall']:7.1f} s  "
            f"{result['peak_rss_mb']:7.0f} MB  {result.get('plan', '')}",
            flush=True,
        )

    for rep in range(args.reps):
        url = fresh_database(args.admin_url, "retention_bench")
        drops.reset_work(folders, work)
        timed(rep, "full build", run_graph, work, url)
        drops.add_drop(folders, work)
        timed(rep, "one-day drop", run_graph, work, url)
        timed(rep, "floor", run_floor, folders.drop, url, drop_files)
        drops.replace_with_changed_copy(work / drop_files["attendance"].name)
        timed(rep, "replaced file", run_graph, work, url)
        (work / drop_files["transactions"].name).unlink()
        timed(rep, "removed file", run_graph, work, url)
    report = summarise_drops(results)
    (OUT / f"{stem(tier, shape)}-drops{'-cold' if args.cold else ''}.json").write_text(
        json.dumps(
            {
                "tier": tier,
                "id_shape": shape,
                "day": folders.day,
                "drop_rows": drop_rows,
                "runs": results,
                "summary": report,
            },
            indent=2,
        )
    )
    title = f"{tier} ({shape} ids{', cold cache' if args.cold else ''})"
    print_drops_table(title, folders.day, drop_rows, args.reps, report)


def summarise_drops(results: dict[str, list[dict]]) -> dict:
    """Medians per step; the drop's source steps (the four source assets' step times) against
    its floor, as the target is "source steps <= 2 x \\copy of the same files + 1 s"."""

    def wall(name: str) -> float:
        return median([r["wall"] for r in results[name]])

    steps = {}
    for name in DROP_STEPS:
        sources = [
            sum(t for step, t in r["phases"].items() if step in SOURCES) for r in results[name]
        ]
        steps[name] = {
            "wall": wall(name),
            "peak_rss_mb": median([r["peak_rss_mb"] for r in results[name]]),
            "over_full_build": wall(name) / wall("full build"),
            "source_steps": median(sources),
        }
    floor, drop_sources = wall("floor"), steps["one-day drop"]["source_steps"]
    steps["one-day drop"]["floor"] = floor
    return {
        "steps": steps,
        "drop_source_steps_budget": 2 * floor + 1,
        "drop_source_steps_ok": drop_sources <= 2 * floor + 1,
    }


DROP_SHARE_GOAL = 0.15  # a one-day drop's wall time against the full build's


def print_drops_table(
    title: str, day: str, drop_rows: dict[str, int], reps: int, report: dict
) -> None:
    rows = ", ".join(f"{n:,} {source}" for source, n in drop_rows.items())
    print(f"\ntier {title}, drops of {day} ({rows} rows), median of {reps} reps")
    print(
        f"{'run':<14} {'wall s':>8} {'peak RSS MB':>12} {'x full':>7} {'sources s':>10} {COPY_S:>9}"
    )
    for name, step in report["steps"].items():
        floor = f"{step['floor']:9.1f}" if "floor" in step else f"{'':>9}"
        print(
            f"{name:<14} {step['wall']:8.1f} {step['peak_rss_mb']:12.0f} "
            f"{step['over_full_build']:7.2f} {step['source_steps']:10.1f} {floor}"
        )
    drop = report["steps"]["one-day drop"]
    verdict = "ok" if report["drop_source_steps_ok"] else "MISSED"
    print(
        f"\ndrop source steps {drop['source_steps']:.1f} s <= 2 x \\copy + 1 s = "
        f"{report['drop_source_steps_budget']:.1f} s  {verdict}"
    )
    share = drop["over_full_build"]
    print(
        f"one-day drop {share:.2f} x full build <= {DROP_SHARE_GOAL:.2f}  "
        f"{'ok' if share <= DROP_SHARE_GOAL else 'MISSED'}"
    )


def summarise(tier: str, rows: int, results: dict[str, list[dict]]) -> dict:
    def wall(name: str) -> float:
        return median([r["wall"] for r in results.get(name, [])])

    def rss(name: str) -> float:
        return median([r["peak_rss_mb"] for r in results.get(name, [])])

    def phase(name: str, key: str) -> float:
        return median(
            [r["phases"][key] for r in results.get(name, []) if key in r.get("phases", {})]
        )

    naive_read_compute = phase("naive", "read") + phase("naive", "compute")
    analytics = phase("analytics", "load") + phase("analytics", "compute")
    return {
        "graph_over_floor": wall("graph") / wall("floor"),
        "analytics_over_naive_read_compute": analytics / naive_read_compute,
        "write_over_naive_to_sql": phase("analytics", "write_rfm_clv") / phase("naive", "to_sql"),
        "graph_rss_over_naive_rss": rss("graph") / rss("naive"),
        "graph_peak_rss_mb": rss("graph"),
    }


def print_table(title: str, rows: int, results: dict[str, list[dict]], report: dict) -> None:
    print(
        f"\ntier {title}: {rows:,} input rows, median of {len(next(iter(results.values())))} reps"
    )
    print(f"{'run':<10} {'wall s':>8} {'peak RSS MB':>12} {'rows/s':>12}  phases (s)")
    for name, runs in results.items():
        wall = median([r["wall"] for r in runs])
        rss = median([r["peak_rss_mb"] for r in runs])
        keys = runs[0].get("phases", {}).keys()
        phases = ", ".join(f"{k} {median([r['phases'][k] for r in runs]):.1f}" for k in keys)
        print(f"{name:<10} {wall:8.1f} {rss:12.0f} {rows / wall:12,.0f}  {phases}")
    targets = [
        ("1. graph / \\copy floor", "graph_over_floor", 1.2),
        ("2. analytics / naive read+compute", "analytics_over_naive_read_compute", 0.5),
        ("3. write rfm+clv / naive to_sql", "write_over_naive_to_sql", 0.1),
        ("4. graph peak RSS / naive peak RSS", "graph_rss_over_naive_rss", 0.5),
    ]
    print(f"\n{'target':<38} {'ratio':>7} {'goal':>6}")
    for label, key, goal in targets:
        value = report[key]
        if math.isnan(value):  # a run it needs was left out (--only)
            print(f"{label:<38} {'-':>7} {goal:6.2f}  not measured")
            continue
        verdict = "ok" if value <= goal else "MISSED"
        print(f"{label:<38} {value:7.2f} {goal:6.2f}  {verdict}")


HISTORY_SNAPSHOTS = 3
HISTORY_DB = "retention_bench_history"


def bench_history(tier: str, shape: str, data: Path, rows: int, args: argparse.Namespace) -> None:
    """On a fresh database: load the tier with one `retention-assets run` (the full build: the
    loads and one analytics run), then time `run --history N` (N analytics runs, one per
    monthly snapshot, nothing to load), split per snapshot (step times, wall and peak RSS of
    each run's window), with the history tables' sizes and the parts of the history assets
    timed apart (history.breakdown). The database is dropped at the end."""
    url = fresh_database(args.admin_url, HISTORY_DB)
    try:
        full = run_graph(data, url, timeline=True)
        print(
            f"full build        {full['wall']:7.1f} s  {full['peak_rss_mb']:7.0f} MB  "
            f"{full.get('plan', '')}",
            flush=True,
        )
        timed = run_graph(data, url, ("--history", str(args.history)), timeline=True)
        print(
            f"run --history {args.history:<3} {timed['wall']:7.1f} s  "
            f"{timed['peak_rss_mb']:7.0f} MB  {timed.get('plan', '')}",
            flush=True,
        )
        sizes = history.table_sizes(url, GRAPH_SCHEMA)
        parts = history.breakdown(url, GRAPH_SCHEMA)
    finally:
        _execute(args.admin_url, f'DROP DATABASE IF EXISTS "{HISTORY_DB}" WITH (FORCE)')
    runs = history.split_runs(timed["lines"])
    if len(runs) != args.history:
        raise RuntimeError(f"expected {args.history} analytics runs, found {len(runs)}")
    for run, peak, start in zip(
        runs,
        history.window_peaks(timed["rss_samples"], runs),
        [0.0, *(r["ended_at"] for r in runs)],
        strict=False,
    ):
        run["peak_rss_mb"], run["wall"] = peak, run["ended_at"] - start
    report = {
        "tier": tier,
        "id_shape": shape,
        "rows": rows,
        "snapshots": args.history,
        "full_build": _history_run(full),
        "history_run": _history_run(timed) | {"runs": runs},
        "steps": {
            step: {
                "per_snapshot": [r["steps"].get(step) for r in runs],
                "median": _median_or_none([r["steps"].get(step) for r in runs]),
                "full_build": full["phases"].get(step),
            }
            for step in _step_order([*full["phases"], *timed["phases"]])
        },
        "tables": sizes,
        "breakdown": parts,
    }
    (OUT / f"{stem(tier, shape)}-history.json").write_text(json.dumps(report, indent=2))
    print_history_table(f"{tier} ({shape} ids)", report)


def _median_or_none(values: list[float | None]) -> float | None:
    """The median of the values given (None: the step did not run), None if none was."""
    present = [v for v in values if v is not None]
    return median(present) if present else None


def _history_run(result: dict) -> dict:
    return {key: result.get(key) for key in ("wall", "peak_rss_mb", "plan", "phases")}


def _step_order(steps: list[str]) -> list[str]:
    """history.STEP_ORDER's steps first, then the others (the loads) in order of appearance."""
    present = dict.fromkeys(steps)
    return [s for s in history.STEP_ORDER if s in present] + [
        s for s in present if s not in history.STEP_ORDER
    ]


def print_history_table(title: str, report: dict) -> None:
    timed, full = report["history_run"], report["full_build"]
    n = report["snapshots"]
    print(
        f"\ntier {title}: {report['rows']:,} input rows; full build {full['wall']:.1f} s, "
        f"{full['peak_rss_mb']:.0f} MB; `run --history {n}` {timed['wall']:.1f} s, "
        f"{timed['peak_rss_mb']:.0f} MB peak RSS"
    )
    runs = timed["runs"]
    head = "".join(f"{r['as_of'] or '?':>11}" for r in runs)
    print(f"{'step (s)':<19}{head} {'median':>7} {'full build':>11}")

    def cell(value: float | None, width: int) -> str:
        return f"{value:{width}.1f}" if value is not None else f"{'-':>{width}}"

    for step, times in report["steps"].items():
        cells = "".join(cell(t, 11) for t in times["per_snapshot"])
        print(f"{step:<19}{cells} {cell(times['median'], 7)} {cell(times['full_build'], 11)}")
    print(f"{'run wall':<19}" + "".join(f"{r['wall']:11.1f}" for r in runs))
    print(f"{'run peak RSS MB':<19}" + "".join(f"{r['peak_rss_mb']:11.0f}" for r in runs))
    print("(rfm_history's step writes the slice to staging; its upsert runs in `snapshot`)")
    print(f"\n{'table':<19} {'rows':>12} {'snapshots':>10} {'MB':>8}")
    for table, size in report["tables"].items():
        snapshots = size["snapshots"] if size["snapshots"] is not None else "-"
        print(f"{table:<19} {size['rows']:12,} {snapshots:>10} {size['mb']:8.1f}")
    parts = report["breakdown"]
    print(f"\nparts for {parts['as_of']} ({parts['rfm_rows']:,} rfm rows), best of 2, s")
    for name, seconds in parts["seconds"].items():
        print(f"  {name:<42} {seconds:7.2f}")


if __name__ == "__main__":
    main()
