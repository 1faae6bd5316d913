# One image for every part of the platform; the command names the role (deploy/entrypoint.sh):
#
#   sandbox       the four API stand-ins (generates a history into the data volume if missing)
#   pipeline      one full run: ingest -> dbt build -> publish the serving snapshot, then exit
#   webserver     the Dagster UI on port 3000
#   daemon        the Dagster daemon (schedules, sensors, run queue)
#   dashboard     the Dash app on port 8050 (gunicorn)
#   api           the booking API on port 8000 (uvicorn; its store's migrations run first)
#   create-users  write demo dashboard users (passwords printed once)
#
# and, in the scaled-out image (compose.scale.yaml: built with UV_SYNC_ARGS="--group scale
# --group spark" and EXTRA_APT_PACKAGES=openjdk-17-jre-headless):
#
#   code-server   the Dagster code location as a gRPC server (runs are launched from it)
#   spark-master  a Spark standalone master (7077, UI 8080), from pyspark's own distribution
#   spark-worker  a Spark standalone worker of SPARK_MASTER
#   objectstore   an S3-compatible store for trying the shape on one machine (moto's server)
#
# compose.yaml wires them together over one data volume. Secrets are never part of the image:
# they come from the environment at run time (an env file; names in .env.example).
#
# Debian bookworm's python3 is 3.11, the version pyproject.toml requires. Behind a proxy that
# intercepts TLS, build FROM a bookworm image that already trusts the proxy's CA (pass it as
# --build-arg BASE_IMAGE=...; scripts/docker-check.sh makes one), so uv can reach PyPI.
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim

# ---------------------------------------------------------------- builder: venv + dbt manifest
FROM ${BASE_IMAGE} AS builder

ARG UV_VERSION=0.13.9
# More dependency groups (the scaled-out image: "--group scale --group spark").
ARG UV_SYNC_ARGS=""
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# uv bundles its own CA roots; pointing it (and pip) at the system bundle makes any CA the base
# image trusts work for the downloads below.
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
RUN python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --disable-pip-version-check "uv==${UV_VERSION}"

# The venv lives where the runtime stage runs it, on the system Python the runtime also has.
ENV UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_PYTHON=/usr/bin/python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy
WORKDIR /app

# Dependencies first, from the lock file only: this layer is rebuilt when uv.lock changes,
# not on every source edit.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    /opt/uv/bin/uv sync --frozen --no-dev --no-install-project ${UV_SYNC_ARGS}

COPY . .
# The dbt manifest is built once here, so no container parses the project at start-up, and
# dbt's partial-parse state comes with it, so each `dbt build` starts faster. Both hold paths:
# parse with the absolute project path warehouse/manifest.py uses, and the data folder of the
# runtime stage (its paths are dbt vars, rendered into the manifest: the sources' file globs).
ENV DATA_DIR=/app/data \
    DO_NOT_TRACK=1
RUN /app/.venv/bin/python -m warehouse.manifest \
    && test -s /app/dbt_project/target/manifest.json \
    && rm -rf /app/dbt_project/logs

# ---------------------------------------------------------------- runtime
FROM ${BASE_IMAGE} AS runtime

# More Debian packages (the scaled-out image: Java for Spark, "openjdk-17-jre-headless").
ARG EXTRA_APT_PACKAGES=""
ENV DEBIAN_FRONTEND=noninteractive
# tini as PID 1: forwards SIGTERM (a bare Python PID 1 ignores it) and reaps the code-server
# processes Dagster starts.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 tini passwd \
        ${EXTRA_APT_PACKAGES} \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 10001 --user-group --create-home --home-dir /home/app app

ENV PATH=/app/.venv/bin:$PATH \
    VIRTUAL_ENV=/app/.venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DATA_DIR=/app/data \
    DAGSTER_HOME=/app/data/dagster_home \
    DAGSTER_DISABLE_TELEMETRY=1 \
    DO_NOT_TRACK=1
WORKDIR /app

COPY --from=builder /app/.venv /app/.venv
COPY . .
COPY --from=builder /app/dbt_project/target /app/dbt_project/target
# The source stays root-owned and read-only, except dbt_project: dbt writes its target/ and
# logs/ there. All other state goes to /app/data (the registry files each build writes too).
RUN python3 -m compileall -q -x '(^|/)\.venv/' /app \
    && mkdir -p /app/data \
    && chown -R app:app /app/data /app/dbt_project
USER app
VOLUME ["/app/data"]

# Dagster UI 3000, dashboard 8050, booking API 8000, then the stand-ins (settings.STANDIN_PORTS;
# a Dockerfile cannot read Python, tests/test_layout.py keeps the two equal). Each role its own.
EXPOSE 3000 8000 8050 8001 8002 8003 8004
# Role-aware: the HTTP port of the role answers, the daemon has a recent heartbeat, one-shot
# roles are healthy while they run.
HEALTHCHECK --interval=30s --timeout=20s --start-period=120s --retries=3 \
    CMD ["/app/.venv/bin/python", "/app/deploy/healthcheck.py"]

ENTRYPOINT ["/usr/bin/tini", "--", "bash", "/app/deploy/entrypoint.sh"]
CMD ["dashboard"]
