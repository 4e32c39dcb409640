"""Where a run's steps execute: in the run's own process (the default), or as Celery tasks on
`dagster-celery worker start` workers, other processes that may be on other machines."""

from __future__ import annotations

import dagster as dg

from .settings import CELERY_BACKEND, CELERY_BROKER, Settings


def build_executor(settings: Settings) -> dg.ExecutorDefinition:
    """In-process by default: a step in a process of its own re-imports pandas + sklearn (about
    5 s a step on 2 cores). With Celery, every step reads its inputs from PostgreSQL (the IO
    managers hand nothing on in memory across processes), and the broker and backend URLs
    are read from the environment when a run starts, so no secret is stored with the run."""
    if settings.executor != "celery":
        return dg.in_process_executor
    from dagster_celery import celery_executor  # only deployments with workers import Celery

    return celery_executor.configured(
        {"broker": {"env": CELERY_BROKER}, "backend": {"env": CELERY_BACKEND}}, name="celery"
    )
