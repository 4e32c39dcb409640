"""Benchmark: the probabilistic CLV fit and forecast (BG/NBD + Gamma-Gamma) against lifetimes.

    .venv/bin/python benchmarks/clv_fit.py --tiers M L
    .venv/bin/python benchmarks/clv_fit.py --tiers M --blas-threads 1 --profile
    .venv/bin/python benchmarks/clv_fit.py --verify 25000   # replica vs `retention-assets generate`

Per tier (S: 2k, M: 100k, L: 1M customers, seed 7, padded ids) it builds the generator's
transactions (the generator's own functions, chunk by chunk and in its random-stream order,
without the attendance the models never read: the same transactions `retention-assets generate`
writes, see --verify) and reduces them to the per-customer purchase occasions that
`storage.activity.purchase_occasions` computes in SQL (distinct transaction dates, first / last
date, total amount, the first date's amount), cached in --cache-dir. The occasions rows are
shuffled (as SQL's hash aggregate returns them) and carry the dtypes `read_query` gives.

Then it times, --reps times each (median): `purchase_summary`, `fit_bgnbd`, `fit_gamma_gamma`,
`fit_clv_model` (both fits) and `clv_forecast` (52 weeks, 12 months, 10 %), and runs lifetimes
0.11.3's BetaGeoFitter and GammaGammaFitter on the same summary (frequency = x, recency = t_x,
T, monetary_value = avg_repeat_spend where x > 0) in a separate interpreter (--lifetimes-python,
default /tmp/lifetimes-venv/bin/python; lifetimes is never a dependency of this project):

    python3 -m venv /tmp/lifetimes-venv
    /tmp/lifetimes-venv/bin/pip install lifetimes==0.11.3 'setuptools<82'

lifetimes runs once per customer (its usual use) and once on the distinct rows with its
`weights` argument (what our fit does internally). Both fits' log-likelihoods are evaluated
with our formulas on all customers, so the better optimum shows. Results go to
benchmarks/out/clv_fit-<tier>.json; the table goes to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from threadpoolctl import threadpool_info, threadpool_limits

from retention_assets import generate as gen
from retention_assets.core import btyd
from retention_assets.core.forecast import clv_forecast, fit_clv_model, purchase_summary

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "out"
TIERS = {"S": 2_000, "M": 100_000, "L": 1_000_000}
TARGET_S = {"S": 3.0, "M": 3.0, "L": 20.0}  # fit + forecast
SEED = 7
LIFETIMES_DEFAULT = Path("/tmp/lifetimes-venv/bin/python")
TIME_UNIT_DAYS = 7.0

# Run by the lifetimes interpreter: argv = summary .npz, result .json. Never imports this
# project; every failure (ConvergenceError, anything else) is reported, not raised.
LIFETIMES_RUNNER = r"""
import contextlib, io, json, sys, time, warnings
import numpy as np
import pandas as pd
import lifetimes
import lifetimes.fitters
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import ConvergenceError

data = np.load(sys.argv[1])
result = {"lifetimes": lifetimes.__version__, "pandas": pd.__version__, "numpy": np.__version__}
last = {}  # scipy's last result inside lifetimes: its estimate even when it raises
minimize = lifetimes.fitters.minimize

def recording_minimize(*args, **kwargs):
    last["output"] = output = minimize(*args, **kwargs)
    return output

lifetimes.fitters.minimize = recording_minimize

def run(name, fitter, args, kwargs, names):
    printed = io.StringIO()
    last.clear()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(printed):
        warnings.simplefilter("always")
        start = time.perf_counter()
        try:
            fitter.fit(*args, **kwargs)
            status, params = "ok", [float(fitter.params_[n]) for n in names]
        except ConvergenceError:
            status, params = "ConvergenceError", None
        except Exception as e:  # noqa: BLE001 - report whatever it was
            status, params = f"{type(e).__name__}: {e}"[:300], None
        wall = time.perf_counter() - start
    output = last.get("output")
    if params is None and output is not None:  # the estimate lifetimes refused to return
        params = [float(v) for v in np.exp(output.x)]
        if names[1] == "alpha":
            params[1] /= fitter._scale  # lifetimes fits alpha in time / max(T)
    messages = sorted({f"{w.category.__name__}: {w.message}"[:200] for w in caught})
    result[name] = {
        "wall": wall, "status": status, "params": params, "warnings": len(caught),
        "warning_messages": messages[:5],
        "optimizer": None if output is None else {
            "success": bool(output.success), "message": str(output.message),
            "nit": int(output.nit), "nfev": int(output.nfev),
            "max_abs_jac": float(np.abs(output.jac).max()),
        },
    }

x, t_x, T, m = data["x"], data["t_x"], data["T"], data["m"]
rows, w = data["rows"], data["w"]
spend_rows, spend_w = data["spend_rows"], data["spend_w"]
repeat = (x > 0) & np.isfinite(m) & (m > 0)
bg = ["r", "alpha", "a", "b"]
gg = ["p", "q", "v"]
run("bgnbd", BetaGeoFitter(), (x, t_x, T), {}, bg)
run("gamma_gamma", GammaGammaFitter(), (x[repeat], m[repeat]), {}, gg)
run("bgnbd_weighted", BetaGeoFitter(), (rows[:, 0], rows[:, 1], rows[:, 2]), {"weights": w}, bg)
run("gamma_gamma_weighted", GammaGammaFitter(), (spend_rows[:, 0], spend_rows[:, 1]),
    {"weights": spend_w}, gg)
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's.
with open("/proc/self/status") as f:
    hwm = [line.split()[1] for line in f if line.startswith("VmHWM:")]
result["peak_rss_mb"] = int(hwm[0]) / 1024 if hwm else float("nan")
with open(sys.argv[2], "w") as f:
    json.dump(result, f)
"""


# --- data ------------------------------------------------------------------------------------


def _generator_defaults() -> tuple[dt.date, int]:
    params = inspect.signature(gen.generate_dataset).parameters
    return params["end_date"].default, params["history_days"].default


def generator_transactions(customers: int, seed: int = SEED, id_shape: str = "padded"):
    """Yield the generator's transactions chunk by chunk (customer_id, transaction_date,
    amount, ...; no transaction_id): `generate_dataset`'s loop without the attendance, which
    draws from the chunk's stream after the transactions, so they come out the same."""
    end_date, history_days = _generator_defaults()
    start = np.datetime64(end_date - dt.timedelta(days=history_days - 1), "D")
    chunk_size = max(1, gen._CHUNK_CELLS // history_days)
    customer_ids = gen._IdSequence("C", max(7, len(str(customers))), id_shape)
    package_ids = gen._package_ids(id_shape, np.random.default_rng([seed, 0, gen._DATASET_STREAM]))
    for chunk_no, first in enumerate(range(0, customers, chunk_size)):
        n = min(chunk_size, customers - first)
        rng = np.random.default_rng([seed, chunk_no])
        id_rng = np.random.default_rng([seed, chunk_no, gen._UUID_STREAM])
        numbers = np.arange(first + 1, first + n + 1)
        cohort = gen._draw_cohort(rng, numbers, customer_ids.label(numbers, id_rng), history_days)
        gen._customers_table(rng, cohort, start)  # draws from rng before the transactions
        yield gen._transactions_table(rng, cohort, start, package_ids)


def occasions_of(transactions: pa.Table) -> pd.DataFrame:
    """purchase_occasions (storage/activity.py) in pandas: per customer, the distinct dates
    with transactions, first / last of them, the sum of amounts and the first date's sum.
    Amounts are summed in cents, exactly as SQL sums numeric."""
    text = transactions["amount"]
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    if not pc.all(pc.match_substring_regex(text, r"^-?\d+\.\d\d$")).as_py():
        raise ValueError("amounts are expected with exactly two decimals")
    cents = pc.cast(pc.replace_substring(text, ".", ""), pa.int64()).to_numpy()
    day = pc.cast(pc.cast(transactions["transaction_date"], pa.date32()), pa.int32())
    frame = pd.DataFrame(
        {
            "customer_id": transactions["customer_id"].to_numpy(zero_copy_only=False),
            "day": day.to_numpy(),
            "cents": cents,
        }
    )
    days = frame.groupby(["customer_id", "day"], sort=True, as_index=False)["cents"].sum()
    per = days.groupby("customer_id", sort=False).agg(
        first_date=("day", "min"),
        last_date=("day", "max"),
        occasions=("day", "size"),
        total=("cents", "sum"),
        first=("cents", "first"),
    )
    return pd.DataFrame(
        {
            "customer_id": per.index.to_numpy(),
            "first_date": per["first_date"].to_numpy(),
            "last_date": per["last_date"].to_numpy(),
            "occasions": per["occasions"].to_numpy("int64"),
            "total_amount": per["total"].to_numpy() / 100.0,
            "first_amount": per["first"].to_numpy() / 100.0,
        }
    )


def tier_occasions(tier: str, cache: Path) -> Path:
    """The tier's occasions as parquet (day numbers since 1970), built on first use."""
    # Named after the generator's source too: a changed generator builds new occasions.
    version = hashlib.sha256(inspect.getsource(gen).encode()).hexdigest()[:10]
    path = cache / f"clv-occasions-{tier}-seed{SEED}-{version}.parquet"
    if not path.exists():
        print(f"building the occasions of tier {tier} ({TIERS[tier]:,} customers) ...", flush=True)
        started = time.perf_counter()
        # In a child process: the main process's peak RSS stays that of the models.
        subprocess.run(
            [sys.executable, __file__, "--build-occasions", tier, str(path)], check=True, cwd=ROOT
        )
        print(f"  done in {time.perf_counter() - started:.1f} s -> {path}", flush=True)
    return path


def build_occasions(tier: str, path: Path) -> None:
    parts = [occasions_of(t) for t in generator_transactions(TIERS[tier])]
    frame = pd.concat(parts, ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), partial)
    os.replace(partial, path)


def load_occasions(path: Path) -> pd.DataFrame:
    """The occasions as `purchase_occasions` returns them: str ids, Arrow date32 dates,
    nullable Int64 counts (read_query's dtypes), rows in a random order (hash aggregate)."""
    table = pq.read_table(path)
    frame = pd.DataFrame(
        {
            "customer_id": pd.Series(table["customer_id"].to_numpy(), dtype="str"),
            "first_date": _date32(table["first_date"]),
            "last_date": _date32(table["last_date"]),
            "occasions": pd.Series(table["occasions"].to_numpy(), dtype="Int64"),
            "total_amount": table["total_amount"].to_numpy(),
            "first_amount": table["first_amount"].to_numpy(),
        }
    )
    order = np.random.default_rng(0).permutation(len(frame))
    return frame.take(order).reset_index(drop=True)


def _date32(days: pa.ChunkedArray) -> pd.Series:
    return (
        pa.chunked_array(days)
        .cast(pa.int32())
        .cast(pa.date32())
        .to_pandas(types_mapper={pa.date32(): pd.ArrowDtype(pa.date32())}.get)
    )


def verify(customers: int) -> None:
    """The replica's occasions against those of `retention-assets generate`'s transactions.csv."""
    import pyarrow.csv as pacsv

    with tempfile.TemporaryDirectory(prefix="clv-verify-") as folder:
        subprocess.run(
            [
                *(str(Path(sys.executable).parent / "retention-assets"), "generate"),
                *("--customers", str(customers), "--seed", str(SEED), "--out", folder),
            ],
            check=True,
        )
        csv = pacsv.read_csv(
            Path(folder) / "transactions.csv",
            convert_options=pacsv.ConvertOptions(
                column_types={"amount": pa.string(), "transaction_date": pa.timestamp("s")}
            ),
        )
    written = occasions_of(csv).sort_values("customer_id", ignore_index=True)
    replica = pd.concat(
        [occasions_of(t) for t in generator_transactions(customers)], ignore_index=True
    ).sort_values("customer_id", ignore_index=True)
    pd.testing.assert_frame_equal(written, replica)
    print(
        f"verify: the occasions of {len(written):,} customers ({csv.num_rows:,} transactions) "
        "match those of `retention-assets generate`"
    )


# --- timing ----------------------------------------------------------------------------------


def timed(reps: int, call: Callable[[], object]) -> tuple[float, list[float], object]:
    walls, value = [], None
    for _ in range(reps):
        started = time.perf_counter()
        value = call()
        walls.append(time.perf_counter() - started)
    return statistics.median(walls), walls, value


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_lifetimes(python: Path, summary: pd.DataFrame, timeout: float) -> dict:
    """lifetimes' fits in their own interpreter on the same summary; {"skipped": why} or the
    runner's result (wall time, status, parameters, warnings per fit)."""
    if not python.exists():
        return {"skipped": f"no lifetimes interpreter at {python}"}
    x = summary["frequency_repeat"].to_numpy("float64")
    t_x = summary["t_x"].to_numpy("float64")
    T = summary["T"].to_numpy("float64")
    m = summary["avg_repeat_spend"].to_numpy("float64", na_value=np.nan)
    rows, w = btyd._distinct(np.column_stack([x, np.where(x > 0, t_x, 0.0), T]))
    used = (x > 0) & np.isfinite(m) & (m > 0)
    spend_rows, spend_w = btyd._distinct(np.column_stack([x[used], m[used]]))
    with tempfile.TemporaryDirectory(prefix="clv-lifetimes-") as folder:
        data, out = Path(folder) / "summary.npz", Path(folder) / "result.json"
        np.savez(
            data,
            x=x,
            t_x=t_x,
            T=T,
            m=m,
            rows=rows,
            w=w,
            spend_rows=spend_rows,
            spend_w=spend_w,
        )
        try:
            proc = subprocess.run(
                [str(python), "-c", LIFETIMES_RUNNER, str(data), str(out)],
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=folder,
            )
        except subprocess.TimeoutExpired:
            return {"skipped": f"lifetimes did not finish within {timeout:.0f} s"}
        if proc.returncode != 0 or not out.exists():
            return {"skipped": f"lifetimes runner failed: {proc.stderr.strip()[-500:]}"}
        return json.loads(out.read_text())


def bench_tier(tier: str, args: argparse.Namespace) -> dict:
    occasions = load_occasions(tier_occasions(tier, args.cache_dir))
    as_of, _ = _generator_defaults()  # the window's last day: a run's default as_of
    last = pd.Timestamp(occasions["last_date"].max()).date()
    if last > as_of:
        raise ValueError(f"occasions after the generator's end date {as_of}: {last}")
    reps = args.reps
    res: dict = {"tier": tier, "customers": len(occasions), "as_of": as_of.isoformat()}
    res["load_before"] = os.getloadavg()[0]  # a shared machine: other jobs skew the timings
    print(f"tier {tier}: {len(occasions):,} customers with occasions, as_of {as_of}", flush=True)

    t, walls, summary = timed(reps, lambda: purchase_summary(occasions, as_of, TIME_UNIT_DAYS))
    res["summary_s"], res["summary_walls"] = t, walls
    x = summary["frequency_repeat"].to_numpy("float64")
    t_x = summary["t_x"].to_numpy("float64")
    T = summary["T"].to_numpy("float64")
    m = summary["avg_repeat_spend"].to_numpy("float64", na_value=np.nan)
    res["repeat_buyers"] = int((x > 0).sum())
    res["distinct_gg_rows"] = int(
        len(np.unique(np.column_stack([x, m])[(x > 0) & (m > 0)], axis=0))
    )

    t, walls, bg = timed(reps, lambda: btyd.fit_bgnbd(x, t_x, T))
    res["bgnbd_s"], res["bgnbd_walls"] = t, walls
    t, walls, gg = timed(reps, lambda: btyd.fit_gamma_gamma(x, m))
    res["gg_s"], res["gg_walls"] = t, walls
    t, walls, model = timed(reps, lambda: fit_clv_model(summary, as_of, TIME_UNIT_DAYS))
    res["fit_s"], res["fit_walls"] = t, walls
    t, walls, forecast = timed(reps, lambda: clv_forecast(model, summary))
    res["forecast_s"], res["forecast_walls"] = t, walls
    res["fit_forecast_s"] = res["fit_s"] + res["forecast_s"]
    res["load_after"] = os.getloadavg()[0]
    res["distinct_rows"] = model.n_distinct_rows
    res["ours"] = {
        "bgnbd": _fit_report(model.bgnbd),
        "gamma_gamma": _fit_report(model.gamma_gamma),
    }
    res["forecast_totals"] = {
        "expected_purchases": float(forecast["expected_purchases"].sum()),
        "predicted_clv": float(forecast["predicted_clv"].sum()),
        "discounted_clv": float(forecast["discounted_clv"].sum()),
        "finite": bool(
            np.isfinite(forecast.drop(columns=["customer_id", "avg_repeat_spend"])).all().all()
        ),  # fmt: skip
    }
    assert bg.params == model.bgnbd.params and gg.params == model.gamma_gamma.params

    if args.profile:
        profile(lambda: clv_forecast(fit_clv_model(summary, as_of, TIME_UNIT_DAYS), summary))

    if args.no_lifetimes:
        lt = {"skipped": "--no-lifetimes"}
    else:
        print(f"tier {tier}: lifetimes ({args.lifetimes_python}) ...", flush=True)
        lt = run_lifetimes(args.lifetimes_python, summary, args.lifetimes_timeout)
    # Their estimates scored with our log-likelihood on every customer: the better optimum.
    used = (x > 0) & np.isfinite(m) & (m > 0)
    for name in ("bgnbd", "bgnbd_weighted"):
        if (lt.get(name) or {}).get("params"):
            params = btyd.BgNbdParams(*lt[name]["params"])
            lt[name]["log_likelihood"] = _sum_ll(btyd.bgnbd_log_likelihood, params, x, t_x, T)
    for name in ("gamma_gamma", "gamma_gamma_weighted"):
        if (lt.get(name) or {}).get("params"):
            params = btyd.GammaGammaParams(*lt[name]["params"])
            lt[name]["log_likelihood"] = _sum_ll(
                btyd.gamma_gamma_log_likelihood, params, x[used], m[used]
            )
    res["lifetimes"] = lt
    res["peak_rss_mb"] = peak_rss_mb()
    return res


def _sum_ll(function: Callable[..., np.ndarray], params: object, *data: np.ndarray) -> float:
    try:
        with np.errstate(all="ignore"):
            return float(function(params, *data).sum())
    except ValueError:  # non-positive or non-finite parameters
        return float("nan")


def _fit_report(fit: btyd.BgNbdFit | btyd.GammaGammaFit) -> dict:
    return {
        "params": [float(v) for v in vars(fit.params).values()],
        "log_likelihood": fit.log_likelihood,
        "converged": fit.converged,
        "degenerate": fit.degenerate,
        "note": fit.note,
        "n_distinct": fit.n_distinct,
    }


def profile(call: Callable[[], object]) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(call)
    stats = pstats.Stats(profiler, stream=sys.stdout)
    print("\nprofile of fit_clv_model + clv_forecast (cumulative, top 30):")
    stats.sort_stats("cumulative").print_stats(30)
    print("profile (own time, top 20):")
    stats.sort_stats("tottime").print_stats(20)


# --- report ----------------------------------------------------------------------------------


def _lt_wall(lt: dict, name: str) -> str:
    fit = lt.get(name)
    if not fit:
        return "-"
    return f"{fit['wall']:.2f}" + ("" if fit["status"] == "ok" else "!")


def _ratio(ours: float, lt: dict, *names: str) -> str:
    fits = [lt.get(n) for n in names]
    if not all(fits):
        return "-"
    failed = any(f["status"] != "ok" for f in fits)
    return f"{ours / sum(f['wall'] for f in fits):.2f}" + ("!" if failed else "")


def print_tables(results: list[dict], blas: str) -> None:
    print(f"\nCLV fit + forecast (median of the reps, seconds; BLAS threads: {blas})")
    print(
        f"{'tier':<4} {'customers':>10} {'distinct':>8} {'summary':>8} {'BG/NBD':>7} "
        f"{'GG':>6} {'fit':>6} {'forecast':>8} {'fit+fc':>7} {'target':>11} "
        f"{'lt BG/NBD':>9} {'lt GG':>6} {'BG ours/lt':>10} {'GG ours/lt':>10} "
        f"{'RSS MB':>7}"
    )
    for r in results:
        lt = r["lifetimes"]
        target = TARGET_S[r["tier"]]
        verdict = f"<={target:.0f} " + ("ok" if r["fit_forecast_s"] <= target else "MISSED")
        print(
            f"{r['tier']:<4} {r['customers']:>10,} {r['distinct_rows']:>8,} "
            f"{r['summary_s']:8.2f} {r['bgnbd_s']:7.2f} {r['gg_s']:6.2f} {r['fit_s']:6.2f} "
            f"{r['forecast_s']:8.2f} {r['fit_forecast_s']:7.2f} {verdict:>11} "
            f"{_lt_wall(lt, 'bgnbd'):>9} {_lt_wall(lt, 'gamma_gamma'):>6} "
            f"{_ratio(r['bgnbd_s'], lt, 'bgnbd'):>10} "
            f"{_ratio(r['gg_s'], lt, 'gamma_gamma'):>10} {r['peak_rss_mb']:7.0f}"
        )
    print(
        "distinct: (x, t_x, T) rows the BG/NBD fits; BG/NBD, GG: fit_bgnbd, fit_gamma_gamma; "
        "fit: fit_clv_model (both);\nlt: lifetimes 0.11.3 per customer (its fit(), Hessian "
        "included); !: lifetimes raised (its time to the error); RSS: peak of this process"
    )
    for reason in dict.fromkeys(
        r["lifetimes"]["skipped"] for r in results if "skipped" in r["lifetimes"]
    ):
        print(f"lifetimes columns empty: {reason}")
    for r in results:
        print_details(r)


def print_details(r: dict) -> None:
    lt = r["lifetimes"]
    print(
        f"\ntier {r['tier']}: {r['customers']:,} customers, {r['repeat_buyers']:,} repeat "
        f"buyers, {r['distinct_rows']:,} distinct (x, t_x, T), {r['distinct_gg_rows']:,} "
        f"distinct (x, spend); as_of {r['as_of']}; load average {r['load_before']:.1f} before, "
        f"{r['load_after']:.1f} after our timings"
    )
    walls = ", ".join(
        f"{k} {' '.join(f'{w:.2f}' for w in r[k + '_walls'])}"
        for k in ("summary", "bgnbd", "gg", "fit", "forecast")
    )
    print(f"  every rep (s): {walls}")
    if "skipped" in lt:
        print(f"  lifetimes skipped: {lt['skipped']}")
    else:
        bg_ratio = _ratio(r["bgnbd_s"], lt, "bgnbd_weighted")
        gg_ratio = _ratio(r["gg_s"], lt, "gamma_gamma_weighted")
        print(
            f"  lifetimes {lt['lifetimes']} (pandas {lt['pandas']}, numpy {lt['numpy']}), peak "
            f"RSS {lt['peak_rss_mb']:.0f} MB; on the distinct rows with weights: BG/NBD "
            f"{_lt_wall(lt, 'bgnbd_weighted')} s (ours/lt {bg_ratio}), "
            f"GG {_lt_wall(lt, 'gamma_gamma_weighted')} s (ours/lt {gg_ratio})"
        )
    for model, names, lt_names in (
        ("bgnbd", ("r", "alpha", "a", "b"), ("bgnbd", "bgnbd_weighted")),
        ("gamma_gamma", ("p", "q", "gamma"), ("gamma_gamma", "gamma_gamma_weighted")),
    ):
        ours = r["ours"][model]
        others = [lt.get(n) or {} for n in lt_names]
        print(f"  {model:<12} {'ours':>16} " + " ".join(f"{'lt ' + n:>22}" for n in lt_names))
        for i, name in enumerate(names):
            cells = [f"{o['params'][i]:22.6g}" if o.get("params") else f"{'-':>22}" for o in others]
            print(f"  {name:<12} {ours['params'][i]:16.6g} " + " ".join(cells))
        cells = [
            f"{o['log_likelihood'] - ours['log_likelihood']:22.4g}"
            if "log_likelihood" in o
            else f"{'-':>22}"
            for o in others
        ]
        print(f"  {'log-lik':<12} {ours['log_likelihood']:16.2f} " + " ".join(cells))
        print(f"  {'':<12} {'':>16} " + " ".join(f"{'(minus ours)':>22}" for _ in others))
        flags = ("converged" if ours["converged"] else "NOT converged") + (
            ", degenerate" if ours["degenerate"] else ""
        )
        cells = [f"{o.get('status', '-')[:22]:>22}" for o in others]
        print(f"  {'status':<12} {flags[:16]:>16} " + " ".join(cells))
        if ours["note"]:
            print(f"    ours: {ours['note']}")
        for n, o in zip(lt_names, others, strict=True):
            run = o.get("optimizer")
            if run and (o["status"] != "ok" or not run["success"]):
                print(
                    f"    lt {n}: scipy says {run['message']!r} after {run['nit']} iterations "
                    f"({run['nfev']} evaluations, largest |gradient| {run['max_abs_jac']:.2g}); "
                    "the parameters shown are its last estimate"
                )
            if o.get("warnings"):
                print(f"    lt {n}: {o['warnings']} warnings, e.g. {o['warning_messages'][:2]}")
    totals = r["forecast_totals"]
    print(
        f"  forecast: {totals['expected_purchases']:,.0f} purchases in 52 weeks, predicted "
        f"CLV {totals['predicted_clv']:,.0f}, discounted {totals['discounted_clv']:,.0f}; "
        f"all finite: {totals['finite']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiers", nargs="+", choices=TIERS, default=["M"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cache-dir", type=Path, default=OUT)
    parser.add_argument(
        "--lifetimes-python",
        type=Path,
        default=LIFETIMES_DEFAULT,
        help=f"interpreter with lifetimes 0.11.3 (default {LIFETIMES_DEFAULT}); "
        "missing: the lifetimes columns are skipped",
    )
    parser.add_argument("--lifetimes-timeout", type=float, default=3600)
    parser.add_argument("--no-lifetimes", action="store_true")
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="limit the BLAS threads of this process (threadpoolctl; default: as is)",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile one fit + forecast")
    parser.add_argument("--verify", type=int, metavar="N", help="check the replica at N customers")
    parser.add_argument(
        "--build-occasions", nargs=2, metavar=("TIER", "PATH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.build_occasions:
        build_occasions(args.build_occasions[0], Path(args.build_occasions[1]))
        return
    if args.verify:
        verify(args.verify)
        return
    if args.blas_threads:
        threadpool_limits(args.blas_threads, user_api="blas")
    blas = ", ".join(
        f"{i['internal_api']} {i['num_threads']}"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    )
    if os.environ.get("OPENBLAS_NUM_THREADS"):
        blas += f" (OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']})"
    results = []
    for tier in args.tiers:
        result = bench_tier(tier, args)
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / f"clv_fit-{tier}.json").write_text(json.dumps(result | {"blas": blas}, indent=2))
        results.append(result)
    print_tables(results, blas)


if __name__ == "__main__":
    main()
