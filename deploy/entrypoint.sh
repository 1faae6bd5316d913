#!/usr/bin/env bash
# The container's entry point: the first argument names the role, the rest go to that role's
# program. Any other command runs as given (e.g. `bash`, `dbt --version`).
#
# Settings, all optional (defaults in brackets):
#   SANDBOX_HOST [0.0.0.0]  SANDBOX_PORT_OFFSET [0]  SANDBOX_HISTORY [$DATA_DIR/sandbox/history]
#   SANDBOX_SIZE [20000]    SANDBOX_SEED [7]
#   DAGSTER_WEBSERVER_HOST [0.0.0.0]  DAGSTER_WEBSERVER_PORT [3000]
#   DASHBOARD_HOST [0.0.0.0]          DASHBOARD_PORT [8050]       DASHBOARD_THREADS [16]
#   DASHBOARD_HTTPS [0]  DASHBOARD_PROXIES [0]  (behind a TLS-terminating proxy: 1 and 1)
#   BOOKING_HOST [0.0.0.0]  BOOKING_PORT [8000]  BOOKING_WORKERS [1]
#   BOOKING_DATABASE_URL [SQLite in /app/data/booking]  BOOKING_OPERATOR_TOKEN [unset: no operators]
#   BOOKING_IMPORT_HISTORY [unset: none]  (a generated history to load into an empty store)
#   DAGSTER_WORKSPACE [workspace.yaml]  DAGSTER_INSTANCE_YAML [deploy/dagster.yaml]
#   DAGSTER_CODE_SERVER_PORT [4000]  SPARK_MASTER [spark://spark-master:7077]
#   OBJECTSTORE_PORT [9000]
# deploy/healthcheck.py reads the same variables.
set -euo pipefail
cd /app

role="${1:-dashboard}"
if [ "$#" -gt 0 ]; then
  shift
fi

# The health check runs as a separate process: tell it which role this container plays.
# (With a read-only root file system, mount a tmpfs on /tmp.)
echo "$role" >/tmp/container-role

# Dagster roles share one instance (run history, schedules, sensor state) in the data volume,
# created with the project's instance settings on first use.
ensure_dagster_home() {
  python -c "from orchestration import pipeline; pipeline.ensure_dagster_home()"
}

case "$role" in
  sandbox)
    # Stand-ins need a generated history; make one on first start (manifest.json is written last).
    history="${SANDBOX_HISTORY:-${DATA_DIR:-/app/data}/sandbox/history}"
    if [ ! -f "$history/manifest.json" ]; then
      python -m sandbox generate --size "${SANDBOX_SIZE:-20000}" --seed "${SANDBOX_SEED:-7}" \
        --out "$history"
    fi
    exec python -m sandbox serve --history "$history" \
      --host "${SANDBOX_HOST:-0.0.0.0}" --port-offset "${SANDBOX_PORT_OFFSET:-0}" "$@"
    ;;
  traffic)
    # Members of the stand-ins' history booking through the booking API (BOOKING_API_URL,
    # BOOKING_OPERATOR_TOKEN); it waits for the API, and needs the history the sandbox made.
    exec python -m sandbox traffic \
      --history "${SANDBOX_HISTORY:-${DATA_DIR:-/app/data}/sandbox/history}" "$@"
    ;;
  pipeline)
    ensure_dagster_home
    exec python -m orchestration.pipeline "$@"
    ;;
  webserver)
    ensure_dagster_home
    exec dagster-webserver -w "${DAGSTER_WORKSPACE:-workspace.yaml}" \
      -h "${DAGSTER_WEBSERVER_HOST:-0.0.0.0}" -p "${DAGSTER_WEBSERVER_PORT:-3000}" "$@"
    ;;
  daemon)
    ensure_dagster_home
    exec dagster-daemon run -w "${DAGSTER_WORKSPACE:-workspace.yaml}" "$@"
    ;;
  code-server)
    # The code location as a gRPC server (workspace.scale.yaml): the webserver and daemon load
    # it from here, and the run launcher starts each run in a container of this image.
    ensure_dagster_home
    exec dagster api grpc -h 0.0.0.0 -p "${DAGSTER_CODE_SERVER_PORT:-4000}" \
      --python-file definitions.py "$@"
    ;;
  spark-master)
    exec spark-class org.apache.spark.deploy.master.Master \
      --host 0.0.0.0 --port 7077 --webui-port 8080 "$@"
    ;;
  spark-worker)
    exec spark-class org.apache.spark.deploy.worker.Worker --webui-port 8081 "$@" \
      "${SPARK_MASTER:-spark://spark-master:7077}"
    ;;
  objectstore)
    exec python -m moto.server -H 0.0.0.0 -p "${OBJECTSTORE_PORT:-9000}" "$@"
    ;;
  dashboard)
    # gunicorn (one process, threads), started by the dashboard's own entry point.
    exec python -m dashboard \
      --host "${DASHBOARD_HOST:-0.0.0.0}" --port "${DASHBOARD_PORT:-8050}" "$@"
    ;;
  api)
    # The booking API: migrations of its store first, then uvicorn (booking/__main__.py). With
    # BOOKING_IMPORT_HISTORY naming a generated history (the stand-ins'), its platform side is
    # loaded into the store first; a store already holding it is left as it is.
    if [ -n "${BOOKING_IMPORT_HISTORY:-}" ] && [ -f "$BOOKING_IMPORT_HISTORY/manifest.json" ]; then
      python -m booking import-history "$BOOKING_IMPORT_HISTORY"
    fi
    exec python -m booking --host "${BOOKING_HOST:-0.0.0.0}" --port "${BOOKING_PORT:-8000}" \
      --workers "${BOOKING_WORKERS:-1}" "$@"
    ;;
  create-users)
    exec python -m dashboard create-demo-users "$@"
    ;;
  help | --help | -h)
    sed -n '2,15p' "$0"
    echo "roles: sandbox pipeline webserver daemon dashboard api create-users"
    echo "       code-server spark-master spark-worker objectstore (or any command)"
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
