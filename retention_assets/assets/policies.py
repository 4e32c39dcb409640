"""What the assets share: retrying a database blip, UI kinds, and check results."""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import dagster as dg
import psycopg2

from ..core.quality import Verdict
from ..storage.database import DatabaseUnavailable

P = ParamSpec("P")
R = TypeVar("R")

DB_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)
TABLE_KINDS = {"pandas", "postgres"}


def fail_fast(compute: Callable[P, R]) -> Callable[P, R]:
    """Only a database error is worth DB_RETRY's retries: anything else an asset raises (bad
    data, a bug) fails its step at once instead of after three identical attempts."""

    @functools.wraps(compute)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return compute(*args, **kwargs)
        except (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseUnavailable):
            raise
        except dg.Failure:
            raise
        except Exception as e:
            raise dg.Failure(description=f"{type(e).__name__}: {e}", allow_retries=False) from e

    return guarded


def check_spec(asset: str, name: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
    """Blocking (ERROR) checks stop everything downstream of a failed result."""
    return dg.AssetCheckSpec(name, asset=asset, description=description, blocking=blocking)


def check_result(
    name: str, verdict: Verdict, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        passed=verdict.passed,
        severity=severity,
        description=verdict.description,
        metadata=verdict.figures,
    )
