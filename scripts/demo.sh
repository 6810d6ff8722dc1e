#!/usr/bin/env bash
# npm run demo: bootstrap, bring the cluster up, show a login following you across nodes.
#   npm run demo                 3 app nodes
#   npm run demo -- --scale 5    5 app nodes
#   npm run demo -- --broken     the web-farm bug keyfleet ends: each node with its own keys
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scale=3
export KEYRING_MODE=shared
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale=$2; shift 2 ;;
    --broken) KEYRING_MODE=local; shift ;;
    *) echo "demo: unknown option $1 (try --scale N, --broken)" >&2; exit 2 ;;
  esac
done

bash scripts/bootstrap.sh
# Compose recreates the app nodes when KEYRING_MODE changes between runs.
docker compose up -d --scale "app=$scale"
if [ "$KEYRING_MODE" = local ]; then
  cat <<'BROKEN'

*** BROKEN FARM (KEYRING_MODE=local): every node generated keys of its own at start-up. ***
A login made on one node is refused by the others: watch the /me calls below flap between
200 and 401 as the balancer moves you. Run `npm run demo` again for the fix: one key ring.
BROKEN
fi
port=$(grep -s '^LB_PORT=' .env | cut -d= -f2); port=${port:-8080}
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

token=$(curl -s -H 'content-type: application/json' -d '{"username":"demo","password":"demo-password"}' "$base/login" |
  node -pe 'JSON.parse(require("fs").readFileSync(0, "utf8")).token')
echo
echo "Logged in as demo once; the same token on the next requests:"
for _ in $(seq 1 "$scale"); do
  echo "  $(curl -s -w '  (HTTP %{http_code})' -H "authorization: Bearer $token" "$base/me")"
done

cat <<TOUR

keyfleet is up.
  page            $base/                (log in as demo / demo-password, then reload)
  health          $base/healthz
  JWKS            $base/.well-known/jwks.json
  HAProxy stats   http://127.0.0.1:8404/

A short tour:
  docker compose exec app keyfleet status         nodes, keys, the primary
  docker compose exec app keyfleet rotate         new keys, nobody logged out
  docker compose up -d --scale app=5              watch two nodes join (stats page)
  docker compose down                             stop (add -v to forget the ring)
TOUR
