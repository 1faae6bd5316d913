#!/usr/bin/env bash
# Builds the container image and proves each role works, end to end, with podman:
#
#   1. podman, runc and debootstrap installed (apt) when missing;
#   2. a Debian bookworm base image made locally with debootstrap when the podman store has none
#      (no registry pull needed), trusting the same extra CA certificates as this host;
#   3. the image built from the Dockerfile;
#   4. stand-ins (sandbox role) up and healthy on free ports;
#   5. the api role (booking API), the history's platform side imported into its store:
#      HEALTHCHECK, /api/v1/health and /docs 200, a CoffeeChain flight search through it from
#      another container, its admin routes open to the operator token, its event feed serving
#      the history;
#   6. the pipeline role run against the stand-ins and the API's feeds: exit 0 and a serving
#      snapshot in the data volume with every tenant's bookings;
#   7. demo users (create-users role), then the dashboard role: sign-in page, HEALTHCHECK, and a
#      signed-in CSV export read from the snapshot;
#   8. the Dagster webserver and daemon roles healthy, the webserver showing the pipeline's runs.
#
# Every container and the data volume are removed at the end, pass or fail; the images stay,
# so a re-run reuses the base image and the build cache.
#
# Settings: IMAGE [loyalty-flights:latest], BASE_IMAGE [localhost/debian-base:bookworm],
# DEBIAN_MIRROR [http://deb.debian.org/debian], SANDBOX_SIZE [2000 bookings].
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${IMAGE:-loyalty-flights:latest}"
BASE_IMAGE="${BASE_IMAGE:-localhost/debian-base:bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SANDBOX_SIZE="${SANDBOX_SIZE:-2000}"
RUN_ID="loyalty-check-$$"
VOLUME="$RUN_ID-data"
STEPS=8

started=$SECONDS
step_started=$SECONDS
verified=()
containers=()

step() {
  step_started=$SECONDS
  echo
  echo "==> [$1/$STEPS] $2"
}

done_step() {
  echo "    done in $((SECONDS - step_started)) s"
}

ok() {
  echo "    ✓ $1"
  verified+=("$1")
}

fail() {
  echo "✗ docker-check failed: $1" >&2
  exit 1
}

show_logs() {
  echo "---- last lines of $1 ----" >&2
  podman logs --tail 40 "$1" >&2 2>&1 || true
  echo "----" >&2
}

# Root is needed for apt and debootstrap only.
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

WORK="$(mktemp -d "${TMPDIR:-/var/tmp}/docker-check.XXXXXX")"

cleanup() {
  local status=$?
  if [ "${#containers[@]}" -gt 0 ]; then
    echo
    echo "==> cleaning up containers and the data volume"
    for name in "${containers[@]}"; do
      podman rm --force --volumes --time 5 "$name" >/dev/null 2>&1 || true
    done
  fi
  podman volume rm --force "$VOLUME" >/dev/null 2>&1 || true
  $SUDO rm -rf "$WORK"
  exit "$status"
}
trap cleanup EXIT

# Without systemd, podman cannot schedule the periodic health checks and says so on every
# `podman run`; this script runs the checks itself (wait_healthy), so that message is noise.
podman_run() {
  podman run "$@" 2> >(grep -v 'unable to get systemd connection' >&2)
}

# A port is free when nothing accepts a connection on it.
port_free() {
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port_from() {
  local port=$1
  while ! port_free "$port"; do
    port=$((port + 1))
  done
  echo "$port"
}

# Waits until the container's own HEALTHCHECK passes (`podman healthcheck run` executes it:
# podman's periodic health timers need systemd, which CI runners often lack).
wait_healthy() {
  local name=$1 timeout=$2 deadline=$((SECONDS + $2))
  while [ "$SECONDS" -lt "$deadline" ]; do
    if [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" != "true" ]; then
      show_logs "$name"
      fail "$name stopped before it became healthy"
    fi
    if podman healthcheck run "$name" >/dev/null 2>&1; then
      return 0
    fi
    sleep 2
  done
  show_logs "$name"
  fail "$name was not healthy within $timeout s"
}

# Starts a long-running role on the host network, with the shared data volume.
start_role() {
  local name="$RUN_ID-$1"
  shift
  containers+=("$name")
  podman_run --detach --name "$name" --network host --volume "$VOLUME:/app/data" "$@" >/dev/null
}

# ---------------------------------------------------------------- 1. tools
step 1 "podman, runc and debootstrap"
missing=()
for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "    installing ${missing[*]} (apt)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null
fi
# Settings that work without systemd (CI runners, containers): runc rather than crun, cgroupfs
# rather than systemd cgroups, a file rather than journald for events, and explicit ulimits
# rather than inheriting the host's.
export CONTAINERS_CONF="$WORK/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
ok "tools present: $(podman --version)"
done_step

# ---------------------------------------------------------------- 2. base image
step 2 "base image $BASE_IMAGE"
if podman image exists "$BASE_IMAGE"; then
  echo "    already in the podman store"
else
  rootfs="$WORK/rootfs"
  echo "    debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
  $SUDO debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" \
    "$DEBIAN_MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -20 "$WORK/debootstrap.log" >&2
    fail "debootstrap failed"
  }
  # Extra CAs this host trusts (a corporate proxy that intercepts TLS, say) are trusted in the
  # image too, so its builds reach PyPI the way this host does.
  shopt -s nullglob
  extra_cas=(/usr/local/share/ca-certificates/*.crt)
  shopt -u nullglob
  if [ "${#extra_cas[@]}" -gt 0 ]; then
    echo "    adding ${#extra_cas[@]} local CA certificate(s)"
    $SUDO cp "${extra_cas[@]}" "$rootfs/usr/local/share/ca-certificates/"
    $SUDO chroot "$rootfs" update-ca-certificates >/dev/null 2>&1 ||
      fail "update-ca-certificates failed in the base image"
  fi
  $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  $SUDO tar -C "$rootfs" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' - "$BASE_IMAGE" >/dev/null
  $SUDO rm -rf "$rootfs"
fi
ok "base image $BASE_IMAGE available locally"
done_step

# ---------------------------------------------------------------- 3. build
step 3 "podman build -t $IMAGE"
# Docker image format: the OCI format has no HEALTHCHECK. The build's own output goes to a
# log (shown on failure); its steps are shown as they run.
build_log="$WORK/build.log"
podman build --format docker --pull=never --build-arg "BASE_IMAGE=$BASE_IMAGE" \
  --tag "$IMAGE" . 2>&1 | tee "$build_log" | grep --line-buffered -E '^\[[0-9]/[0-9]\] STEP|^--> Using cache' |
  sed 's/^/    /' || {
  tail -40 "$build_log" | sed 's/^/    /' >&2
  fail "podman build failed"
}
[ "$(podman image inspect --format '{{.Config.User}}' "$IMAGE")" = "app" ] ||
  fail "the image does not run as its non-root user"
podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" | grep -q healthcheck.py ||
  fail "the image has no HEALTHCHECK"
ok "image $IMAGE built ($(podman image inspect --format '{{.Size}}' "$IMAGE" |
  awk '{printf "%.0f MB", $1 / 1e6}')), non-root user, HEALTHCHECK set"
done_step

# ---------------------------------------------------------------- 4. stand-ins
step 4 "sandbox role: the four stand-ins"
podman volume create "$VOLUME" >/dev/null
# Each stand-in's URL variable and default port, as the image's registry and settings have
# them: "<VARIABLE> <port>" lines.
standin_ports=$(podman_run --rm "$IMAGE" python -c '
from settings import STANDIN_PORTS
from tenants.registry import load_registry
for tenant in load_registry().values():
    print(tenant.api.base_url_env, STANDIN_PORTS[tenant.id])
print("DUFFEL_BASE_URL", STANDIN_PORTS["duffel"])')
# The default ports may be taken (a running `make demo`): shift all four together.
standins_free() {
  local variable port
  while read -r variable port; do
    port_free $((port + offset)) || return 1
  done <<<"$standin_ports"
}
offset=10000
until standins_free; do
  offset=$((offset + 100))
done
# What the platform's roles need to reach these stand-ins. They accept the example
# credentials, so the check uses .env.example, never a developer's .env.
standin_env=(--env-file .env.example)
ports=()
while read -r variable port; do
  standin_env+=(--env "$variable=http://127.0.0.1:$((port + offset))")
  ports+=($((port + offset)))
done <<<"$standin_ports"
echo "    ports ${ports[*]}, history of $SANDBOX_SIZE bookings"
start_role sandbox --env SANDBOX_HOST=127.0.0.1 --env "SANDBOX_PORT_OFFSET=$offset" \
  --env "SANDBOX_SIZE=$SANDBOX_SIZE" "$IMAGE" sandbox
wait_healthy "$RUN_ID-sandbox" 300
ok "sandbox role: history generated into the volume, 4 stand-ins healthy (HEALTHCHECK)"
done_step

# ---------------------------------------------------------------- 5. booking API
step 5 "api role: the booking API, the platform's side of the history imported"
api_port=$(free_port_from 18000)
# A throwaway operator token for this check only (the example env file leaves it empty).
api_token=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_role api "${standin_env[@]}" --env BOOKING_HOST=127.0.0.1 --env "BOOKING_PORT=$api_port" \
  --env "BOOKING_OPERATOR_TOKEN=$api_token" \
  --env BOOKING_IMPORT_HISTORY=/app/data/sandbox/history "$IMAGE" api
wait_healthy "$RUN_ID-api" 120
api="http://127.0.0.1:$api_port"
for path in /api/v1/health /docs; do
  status=$(curl --silent --output /dev/null --write-out '%{http_code}' "$api$path")
  [ "$status" = 200 ] || fail "GET $path answered $status"
done
ok "api role: HEALTHCHECK healthy, GET /api/v1/health and /docs 200 (port $api_port)"
# A member's search, sent from a container of its own: the API reaches the stand-ins' Duffel
# with the tenant's token and prices the offers in stars.
podman_run --rm --network host --env-file .env.example --env "API=$api" "$IMAGE" python -c '
import datetime, json, os, sys, urllib.request
body = {
    "origin": "LHR",
    "destination": "JFK",
    "departure_date": (datetime.date.today() + datetime.timedelta(days=30)).isoformat(),
    "passengers": {"adults": 1, "children": 0, "infants": 0},
    "cabin_class": "economy",
}
request = urllib.request.Request(
    os.environ["API"] + "/api/v1/flights/search",
    data=json.dumps(body).encode(),
    headers={
        "Content-Type": "application/json",
        "X-Tenant-ID": "coffeechain",
        "X-CC-API-Key": os.environ["COFFEECHAIN_API_KEY"],
        "X-CC-Member-ID": "CC1234567",
    },
)
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
with opener.open(request, timeout=60) as response:
    flights = json.load(response)["data"]["flights"]
cheapest = min(flights, key=lambda f: int(f["price"]["loyalty_amount"]))["price"]
stars, fare, currency = cheapest["loyalty_amount"], cheapest["amount"], cheapest["currency"]
print(f"    search LHR-JFK: {len(flights)} offers, the cheapest {stars} stars ({fare} {currency})")
sys.exit(0 if flights and cheapest["loyalty_currency"] == "stars" else 1)
' || {
  show_logs "$RUN_ID-api"
  fail "a CoffeeChain search through the booking API failed"
}
ok "a CoffeeChain member's flight search through the API, from another container, priced in stars"
status=$(curl --silent --output /dev/null --write-out '%{http_code}' "$api/api/v1/admin/events")
[ "$status" = 401 ] || fail "admin events without a token answered $status, not 401"
status=$(curl --silent --output /dev/null --write-out '%{http_code}' \
  -H "Authorization: Bearer $api_token" "$api/api/v1/admin/events")
[ "$status" = 200 ] || fail "admin events with the operator token answered $status"
ok "api role: admin routes 401 without the operator token, 200 with it"
events=$(curl --silent --fail -H "Authorization: Bearer $api_token" \
  "$api/api/v1/admin/events?limit=1000" | grep -o '"booking_id"' | wc -l)
[ "$events" -gt 0 ] || fail "the API serves no event of the imported history"
ok "api role: the generated history's platform side imported; its event feed serves it"
# What the ingestion needs to read the API's feeds.
feed_env=(--env "BOOKING_API_URL=$api" --env "BOOKING_OPERATOR_TOKEN=$api_token")
done_step

# ---------------------------------------------------------------- 6. pipeline
step 6 "pipeline role: ingest -> dbt build -> publish"
# Its progress lines are shown; dbt's own output goes to a log, shown on failure.
pipeline_log="$WORK/pipeline.log"
podman_run --rm --name "$RUN_ID-pipeline" --network host --volume "$VOLUME:/app/data" \
  "${standin_env[@]}" "${feed_env[@]}" "$IMAGE" pipeline 2>&1 | tee "$pipeline_log" |
  grep --line-buffered -E '^(pipeline:|  [✓✗…]|  failed:)' | sed 's/^/    /' || {
  tail -40 "$pipeline_log" | sed 's/^/    /' >&2
  show_logs "$RUN_ID-sandbox"
  fail "the pipeline role exited non-zero"
}
steps_ok=$(sed -n 's|^pipeline: \([0-9]*\)/\1 steps succeeded.*|\1|p' "$pipeline_log")
[ -n "$steps_ok" ] || fail "the pipeline did not report all steps succeeded"
ok "pipeline role exited 0: $steps_ok/$steps_ok runs succeeded"
# The snapshot must be in the shared volume and hold every tenant's bookings.
podman_run --rm --volume "$VOLUME:/app/data" "$IMAGE" python -c '
import json, pathlib, sys
from warehouse.publish import connect
serving = pathlib.Path("/app/data/serving")
version = json.loads((serving / "serving.json").read_text())["version"]
with connect(serving) as con:
    per_tenant = dict(con.sql("select tenant_id, count(*) from bookings group by 1").fetchall())
print(f"    snapshot {version}: bookings per tenant {per_tenant}")
sys.exit(0 if len(per_tenant) == 3 and all(per_tenant.values()) else 1)
' || fail "the serving snapshot is missing or lacks a tenant's bookings"
ok "serving snapshot published in the data volume with bookings for all 3 tenants"
done_step

# ---------------------------------------------------------------- 7. dashboard
step 7 "create-users and dashboard roles"
users=$(podman_run --rm --volume "$VOLUME:/app/data" "$IMAGE" create-users) ||
  fail "the create-users role failed"
password=$(awk '$1 == "operator" { print $2 }' <<<"$users")
[ -n "$password" ] || fail "create-users printed no operator sign-in"
ok "create-users role wrote demo users to the volume"
dashboard_port=$(free_port_from 18050)
start_role dashboard --env DASHBOARD_HOST=127.0.0.1 --env "DASHBOARD_PORT=$dashboard_port" \
  "$IMAGE" dashboard
wait_healthy "$RUN_ID-dashboard" 120
dashboard="http://127.0.0.1:$dashboard_port"
status=$(curl --silent --output /dev/null --write-out '%{http_code}' "$dashboard/login")
[ "$status" = 200 ] || fail "GET /login answered $status"
ok "dashboard role: GET /login 200 and HEALTHCHECK healthy (port $dashboard_port)"
jar="$WORK/cookies"
# The sign-in form carries a CSRF token bound to the session cookie: fetch both, send both.
csrf=$(curl --silent --fail --cookie-jar "$jar" "$dashboard/login" |
  sed -n 's/.*name="csrf_token" value="\([^"]*\)".*/\1/p' | head -1)
[ -n "$csrf" ] || fail "the sign-in form carries no CSRF token"
status=$(curl --silent --output /dev/null --write-out '%{http_code}' --cookie "$jar" \
  --cookie-jar "$jar" --data-urlencode "csrf_token=$csrf" --data-urlencode username=operator \
  --data-urlencode "password=$password" "$dashboard/login")
[ "$status" = 302 ] || fail "signing in as operator answered $status, not a redirect"
rows=$(curl --silent --fail --cookie "$jar" "$dashboard/export/bookings.csv" | tail -n +2 | wc -l)
[ "$rows" -gt 0 ] || fail "the signed-in bookings export is empty"
ok "dashboard sign-in as operator works; bookings export from the snapshot: $rows rows"
done_step

# ---------------------------------------------------------------- 8. Dagster
step 8 "webserver and daemon roles"
webserver_port=$(free_port_from 13000)
start_role webserver --env DAGSTER_WEBSERVER_HOST=127.0.0.1 \
  --env "DAGSTER_WEBSERVER_PORT=$webserver_port" "${standin_env[@]}" "$IMAGE" webserver
start_role daemon "${standin_env[@]}" "${feed_env[@]}" "$IMAGE" daemon
wait_healthy "$RUN_ID-webserver" 180
ok "webserver role: /server_info answers, HEALTHCHECK healthy (port $webserver_port)"
# The runs of the pipeline container are in the instance the webserver reads: one shared
# DAGSTER_HOME in the data volume.
runs=$(curl --silent --fail -H 'Content-Type: application/json' \
  --data '{"query": "{ runsOrError { ... on Runs { results { status } } } }"}' \
  "http://127.0.0.1:$webserver_port/graphql" | grep -o '"SUCCESS"' | wc -l)
[ "$runs" -ge "$steps_ok" ] || fail "the webserver shows $runs successful runs, expected $steps_ok"
ok "webserver shows the pipeline container's $runs successful runs (shared Dagster instance)"
wait_healthy "$RUN_ID-daemon" 180
ok "daemon role: every daemon heartbeating (dagster-daemon liveness-check via HEALTHCHECK)"
done_step


echo
echo "docker-check passed in $((SECONDS - started)) s. Verified:"
for line in "${verified[@]}"; do
  echo "  - $line"
done
