"""Benchmark: the naive pandas script, the bare `psql \\copy` floor and our graph, in one run.

    .venv/bin/python benchmarks/run.py --tier M        # S: 2k, M: 100k, L: 1M customers

Generates (or reuses) the tier's data, then runs the three alternately, --reps times each,
and prints a table (wall time, peak RSS of the process tree, rows/s, per-asset times, the
ratios of the issue's targets); the same figures go to benchmarks/out/<tier>.json.
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
from pathlib import Path

import psutil
import psycopg2
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
TIERS = {"S": 2_000, "M": 100_000, "L": 1_000_000}
BIN = Path(sys.executable).parent

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
\\copy customers FROM '{data}/customers.csv' WITH (FORMAT csv, HEADER)
\\copy packages FROM '{data}/packages.csv' WITH (FORMAT csv, HEADER)
\\copy transactions FROM '{data}/transactions.csv' WITH (FORMAT csv, HEADER)
\\copy attendance FROM '{data}/attendance.csv' WITH (FORMAT csv, HEADER)
"""


def measure(cmd: list[str], env: dict[str, str] | None = None) -> dict:
    """Wall time, peak RSS summed over the process tree (sampled every 50 ms) and stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    peak, done = [0], threading.Event()

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree))
            except psutil.Error:
                pass
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{stdout[-3000:]}\n{stderr[-3000:]}")
    return {"wall": wall, "peak_rss_mb": peak[0] / 2**20, "stdout": stdout}


def prepare_data(tier: str) -> tuple[Path, int]:
    data = OUT / f"data-{tier}"
    marker = data / ".complete"
    if not marker.exists():
        print(f"generating tier {tier} ({TIERS[tier]:,} customers) into {data} ...", flush=True)
        subprocess.run(
            [BIN / "retention-assets", "generate", "--customers", str(TIERS[tier]), "--out", data],
            check=True,
        )
        marker.touch()
    rows = 0
    for name in ("customers", "packages", "transactions", "attendance"):
        with (data / f"{name}.csv").open("rb") as f:
            rows += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b"")) - 1
    return data, rows


def run_script(script: str, data: Path, url: str) -> dict:
    """A benchmark script that prints its phase timings as JSON on its last line."""
    result = measure([sys.executable, f"benchmarks/{script}", "--data", str(data), "--url", url])
    result["phases"] = json.loads(result["stdout"].strip().splitlines()[-1])["timings"]
    return result


def run_naive(data: Path, url: str) -> dict:
    return run_script("naive_baseline.py", data, url)


def run_floor(data: Path, url: str) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(FLOOR_SQL.format(data=data))
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


def run_graph(data: Path, url: str) -> dict:
    env = os.environ | {"DATABASE_URL": url, "RETENTION_DB_SCHEMA": "bench_graph"}
    env.pop("DAGSTER_HOME", None)
    result = measure([str(BIN / "retention-assets"), "run", "--data-dir", str(data)], env)
    steps = {}
    for line in result["stdout"].splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[1:3] == ["done", "in"]:
            steps[parts[0]] = float(parts[3])
    result["phases"] = steps
    return result


def run_analytics(data: Path, url: str) -> dict:
    return run_script("analytics_only.py", data, url)


def fresh_database(admin_url: str, name: str) -> str:
    admin = psycopg2.connect(
        make_url(admin_url).render_as_string(hide_password=False).replace("+psycopg2", "")
    )
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{name}"')
    admin.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tier", choices=TIERS, default="S")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--only", nargs="*", choices=["naive", "floor", "graph", "analytics"])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "RETENTION_TEST_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data, rows = prepare_data(args.tier)
    url = fresh_database(args.admin_url, "retention_bench")
    runners = {
        "naive": run_naive,
        "floor": run_floor,
        "graph": run_graph,
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
    report = summarise(args.tier, rows, results)
    (OUT / f"{args.tier}.json").write_text(
        json.dumps({"tier": args.tier, "rows": rows, "runs": results, "summary": report}, indent=2)
    )
    print_table(args.tier, rows, results, report)


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


def print_table(tier: str, rows: int, results: dict[str, list[dict]], report: dict) -> None:
    print(f"\ntier {tier}: {rows:,} input rows, median of {len(next(iter(results.values())))} reps")
    print(f"{'run':<10} {'wall s':>8} {'peak RSS MB':>12} {'rows/s':>12}  phases (s)")
    for name, runs in results.items():
        wall = median([r["wall"] for r in runs])
        rss = median([r["peak_rss_mb"] for r in runs])
        keys = runs[0].get("phases", {}).keys()
        phases = ", ".join(f"{k} {median([r['phases'][k] for r in runs]):.1f}" for k in keys)
        print(f"{name:<10} {wall:8.1f} {rss:12.0f} {rows / wall:12,.0f}  {phases}")
    targets = [
        ("1. graph / \\copy floor", "graph_over_floor", 1.3),
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


if __name__ == "__main__":
    main()
