"""What the assets share: retrying a database blip, UI kinds, and check results."""

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import dagster as dg

from ..core.quality import Verdict
from ..resources import final_failure
from ..storage.database import is_transient

P = ParamSpec("P")
R = TypeVar("R")

DB_RETRY = dg.RetryPolicy(max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL)
TABLE_KINDS = {"pandas", "postgres"}


def fail_fast(compute: Callable[P, R]) -> Callable[P, R]:
    """Only a transient database error (is_transient: connection lost, serialization failure,
    ...) is worth DB_RETRY's retries: anything else an asset raises (bad data, a bug, a database
    that is down, a full disk) fails its step at once with its reason instead of after three
    identical attempts."""

    @functools.wraps(compute)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return compute(*args, **kwargs)
        except dg.Failure:
            raise
        except Exception as e:
            if is_transient(e):
                raise
            raise final_failure(e) from e

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


def stored_if(verdict: Verdict, frame: R) -> R | None:
    """The frame to store, or None (the IO manager then keeps the table as it was) when the
    blocking check guarding it failed: a result its own check refuses is never swapped in."""
    return frame if verdict.passed else None
