#!/usr/bin/env bash
# npm run deploy: a rolling deploy of the compose cluster with zero failed requests.
# Compose has no rolling update (`docker compose up -d --force-recreate app` replaces every
# replica at once), so this replaces the replicas of one service one at a time:
#   1. start one new replica (`up -d --no-deps --no-recreate --scale SERVICE=N+1`): it gets
#      the service's current image and configuration;
#   2. wait until HAProxy counts N+1 servers UP (its stats CSV): the new node has loaded the
#      ring and passed a health check;
#   3. stop one old replica with SIGTERM: it answers /healthz 503 for SHUTDOWN_DRAIN while
#      still serving, HAProxy takes it out, it finishes in-flight requests and exits;
#   4. wait until HAProxy counts N servers UP again, then the next one.
#
#   npm run deploy                         replace every `app` replica (same image: a restart)
#   npm run deploy -- --build              rebuild the image first (after a code change)
#   npm run deploy -- --service web        another service behind the balancer (an app built
#                                          on the library, see examples/)
# Options: --service NAME (app), --build, --lb NAME (lb), --backend NAME (HAProxy backend, app),
# --timeout SECONDS per step (120), --stop-timeout SECONDS before SIGKILL (20).
# COMPOSE_PROJECT_NAME, KEYFLEET_TAG and STATS_PASSWORD are read as compose reads them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

service=app
lb=lb
backend=app
build=0
timeout=120
stop_timeout=20
while [ $# -gt 0 ]; do
  case "$1" in
    --service) service=$2; shift 2 ;;
    --lb) lb=$2; shift 2 ;;
    --backend) backend=$2; shift 2 ;;
    --build) build=1; shift ;;
    --timeout) timeout=$2; shift 2 ;;
    --stop-timeout) stop_timeout=$2; shift 2 ;;
    *) echo "deploy: unknown option $1 (try --service NAME, --build, --lb NAME, --backend NAME, --timeout S, --stop-timeout S)" >&2; exit 2 ;;
  esac
done

say() { echo "deploy: $*"; }
fail() { echo "deploy: FAILED: $*" >&2; exit 1; }

stats_password=${STATS_PASSWORD:-$(grep -s '^STATS_PASSWORD=' .env | cut -d= -f2- || true)}
stats_port=$(docker compose port "$lb" 8404 2>/dev/null | awk -F: '{print $NF}') || true
[ -n "$stats_port" ] || fail "the balancer service '$lb' is not running (docker compose up -d first)"
stats_url="http://127.0.0.1:$stats_port/;csv"

# How many servers of the backend HAProxy counts UP (CSV: pxname, svname, ..., status is column 18).
servers_up() {
  local auth=()
  [ -n "$stats_password" ] && auth=(-u "admin:$stats_password")
  curl -fsS --max-time 5 "${auth[@]}" "$stats_url" 2>/dev/null |
    awk -F, -v backend="$backend" '$1 == backend && $2 != "BACKEND" && $2 != "FRONTEND" && $18 == "UP" { n++ } END { print n + 0 }'
}

wait_up() {
  local want=$1 what=$2 deadline=$((SECONDS + timeout)) up
  while :; do
    up=$(servers_up)
    [ "$up" -eq "$want" ] && return 0
    [ "$SECONDS" -ge "$deadline" ] && fail "$what: the balancer counts $up servers UP, not $want, after ${timeout}s"
    sleep 0.5
  done
}

running() { docker compose ps -q "$service" 2>/dev/null; }

if [ "$build" = 1 ]; then
  say "building $service"
  docker compose build "$service"
fi
image=$(docker compose config --format json | node -e '
  const config = JSON.parse(require("fs").readFileSync(0, "utf8"));
  process.stdout.write(config.services?.[process.argv[1]]?.image ?? "");' "$service") || fail "docker compose config failed"
[ -n "$image" ] || fail "no image for service '$service' in the compose file"
image_id=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null) || fail "image $image not found (build it, or pass --build)"

mapfile -t old < <(running)
count=${#old[@]}
[ "$count" -gt 0 ] || fail "no running replica of '$service' (docker compose up -d first)"
say "$count replicas of $service to replace with $image (${image_id:7:12}), one at a time"
wait_up "$count" "before starting"

started=$SECONDS
step=0
for id in "${old[@]}"; do
  step=$((step + 1))
  name=$(docker inspect --format '{{.Name}}' "$id" | sed 's#^/##')
  say "[$step/$count] starting a new replica ($((count + 1)) running)"
  docker compose up -d --no-deps --no-recreate --scale "$service=$((count + 1))" "$service" >/dev/null 2>&1 ||
    fail "docker compose could not start a new replica of $service"
  wait_up $((count + 1)) "the new replica"
  say "[$step/$count] new replica UP in the balancer; stopping $name (SIGTERM, it drains)"
  docker stop --time "$stop_timeout" "$id" >/dev/null || fail "could not stop $name"
  docker rm "$id" >/dev/null || fail "could not remove $name"
  wait_up "$count" "after stopping $name"
done

stale=0
for id in $(running); do
  [ "$(docker inspect --format '{{.Image}}' "$id")" = "$image_id" ] || stale=$((stale + 1))
done
[ "$stale" -eq 0 ] || fail "$stale replicas of $service do not run $image"
say "done: $count replicas of $service replaced in $((SECONDS - started))s, all on ${image_id:7:12}, $count UP in the balancer"
