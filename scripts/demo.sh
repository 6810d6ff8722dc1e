#!/usr/bin/env bash
# npm run demo: bootstrap, bring the cluster up, show a login following you across nodes.
#   npm run demo                 3 app nodes
#   npm run demo -- --scale 5    5 app nodes
#   npm run demo -- --broken     the web-farm bug keyfleet ends: each node with its own keys
#   npm run demo -- --app examples/notes-api
#                                an app built on keyfleet as a library instead of the demo node:
#                                its build.sh makes its image, its compose.*.yaml swaps the `app`
#                                service's image, and its tour.sh shows it around
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scale=3
export KEYRING_MODE=shared
# The next signing key is published 1 minute before it may sign (30 min outside the demo),
# so the tour's rotation can promote it a minute after start-up.
export JWKS_PREPUBLISH=${JWKS_PREPUBLISH:-1m}
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --broken) KEYRING_MODE=local; shift ;;
    --app) app=${2%/}; shift 2 ;;
    *) echo "demo: unknown option $1 (try --scale N, --broken, --app DIR)" >&2; exit 2 ;;
  esac
done

bash scripts/bootstrap.sh
if [ -n "${app:-}" ]; then
  overrides=("$app"/compose.*.yaml)
  if [ ! -f "$app/build.sh" ] || [ ! -f "${overrides[0]}" ]; then
    echo "demo: --app $app needs $app/build.sh and one $app/compose.<name>.yaml" >&2; exit 2
  fi
  bash "$app/build.sh"
  # Every docker compose command below (and the ones the tour prints) then uses both files.
  export COMPOSE_FILE="compose.yaml:${overrides[0]}"
fi
# Compose recreates the app nodes when KEYRING_MODE changes between runs.
docker compose up -d --scale "app=$scale"
if [ "$KEYRING_MODE" = local ]; then
  cat <<'BROKEN'

*** BROKEN FARM (KEYRING_MODE=local): every node generated keys of its own at start-up. ***
A login made on one node is refused by the others: watch the /me calls below flap between
200 and 401 as the balancer moves you. Run `npm run demo` again for the fix: one key ring.
BROKEN
fi
port=${LB_PORT:-$(grep -s '^LB_PORT=' .env | cut -d= -f2 || true)}; port=${port:-8080}
base="http://127.0.0.1:$port"

printf 'waiting for %s nodes behind the balancer' "$scale"
declare -A seen=()
for _ in $(seq 1 120); do
  node=$(curl -s -o /dev/null -w '%header{x-node-id}' "$base/healthz" 2>/dev/null || true)
  [ -n "$node" ] && seen[$node]=1
  [ "${#seen[@]}" -ge "$scale" ] && break
  printf '.'; sleep 0.5
done
echo " ${#seen[@]} up: ${!seen[*]}"

if [ -n "${app:-}" ]; then
  if [ -f "$app/tour.sh" ]; then bash "$app/tour.sh" "$base" "$scale"; else echo "$app is up behind $base: see $app/README.md"; fi
  exit 0
fi

token=$(curl -s -H 'content-type: application/json' -d '{"username":"demo","password":"demo-password"}' "$base/login" |
  node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).token')
echo
echo "Logged in as demo once; the same token on the next requests:"
for _ in $(seq 1 "$scale"); do
  echo "  $(curl -s -w '  (HTTP %{http_code})' -H "authorization: Bearer $token" "$base/me")"
done

cat <<TOUR

keyfleet is up: $scale nodes behind HAProxy.
  page            $base/            log in (the demo account is prefilled), then reload
  dashboard       $base/dashboard   nodes, keys per purpose, audit; live (same login)
  HAProxy stats   http://127.0.0.1:8404/
  health, JWKS    $base/healthz   $base/.well-known/jwks.json
  resource APIs   $base/api/whoami (Node, jose)   $base/py/whoami (Python): tokens for "notes"

A short tour:
  1. Open the page, log in, and reload a few times: the node changes with every
     reload, you stay logged in, and the visit counter rises on whichever node serves you.
  2. Keep the dashboard open next to it, then rotate the keys:
       docker compose exec app keyfleet rotate
     encrypt and cookie: a new key is staged, becomes active within milliseconds once every
     node holds it, and the old one is retired. sign: the next key, published in the JWKS
     for JWKS_PREPUBLISH (1 min here), becomes active and a new next key is published; within
     that minute, rotate says when it may (add --wait). The audit list shows each step.
     Reload: still logged in.
  3. Add nodes, and watch them join the dashboard (and the stats page):
       docker compose up -d --scale app=5
  More: docker compose exec app keyfleet status    the same view in a terminal
        docker compose down                        stop (add -v to forget the ring)
TOUR
