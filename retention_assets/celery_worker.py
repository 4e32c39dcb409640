"""Imported by every Celery worker as it starts (`imports` in deploy/celery.yaml): a worker
whose environment lacks what the steps need stops there, naming it, rather than running steps
elsewhere than the runs expect (without DATABASE_URL, a step would start an embedded
PostgreSQL server of its own and write its tables there)."""

from .settings import Settings, SettingsError

if Settings.from_env().executor != "celery":
    raise SettingsError(
        "RETENTION_EXECUTOR is not 'celery': a Celery worker needs the code location's "
        "settings for the Celery executor (RETENTION_EXECUTOR=celery, the broker, the result "
        "backend and DATABASE_URL)"
    )
