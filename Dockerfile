# One image for the whole deployment (see docker-compose.yml): by default it serves the code
# location over gRPC; the webserver and daemon services run it with another command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    RETENTION_DATA_DIR=/opt/dagster/data

WORKDIR /opt/dagster/app

# The package and its pinned dependencies (dagster, dagster-webserver, dagster-postgres, ...);
# psycopg2-binary, pandas, pyarrow and scikit-learn all come as wheels: no compiler needed.
COPY pyproject.toml README.md ./
COPY retention_assets ./retention_assets
RUN pip install . \
    && useradd --system --create-home --home-dir /home/dagster dagster \
    && mkdir -p "$DAGSTER_HOME/storage" "$RETENTION_DATA_DIR" \
    && chown -R dagster:dagster "$DAGSTER_HOME"

# The instance (PostgreSQL storage, run queue) and the workspace that points at user_code:4000.
COPY deploy/dagster.yaml ${DAGSTER_HOME}/dagster.yaml
COPY deploy/workspace.yaml /opt/dagster/app/workspace.yaml
# The Celery workers' config (broker and backend from the environment), for `celery_worker`.
COPY deploy/celery.yaml /opt/dagster/app/celery.yaml

USER dagster
EXPOSE 4000

CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "4000", "-m", "retention_assets.definitions"]
