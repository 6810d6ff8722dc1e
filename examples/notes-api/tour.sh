#!/usr/bin/env bash
# The notes API's tour, printed by `npm run demo -- --app examples/notes-api` once its nodes
# are up: a login on one node, a note written there and read back through the others.
#   tour.sh BASE_URL [NODES]
set -euo pipefail
base=${1:-http://127.0.0.1:8080}
scale=${2:-3}
# Reads JSON on stdin and prints the expression $1 of it (`o`).
json() { node -e 'const o = JSON.parse(require("fs").readFileSync(0, "utf8")); console.log(eval(process.argv[1]))' "$1"; }

login=$(curl -s -H 'content-type: application/json' -d '{"username":"alice","password":"alice-password"}' "$base/login")
token=$(printf '%s' "$login" | json o.token)
echo
echo "alice logged in on $(printf '%s' "$login" | json o.node); the same token on the next requests:"
for _ in $(seq 1 "$scale"); do
  echo "  GET /whoami  $(curl -s -H "authorization: Bearer $token" "$base/whoami")"
done
note=$(curl -s -H "authorization: Bearer $token" -H 'content-type: application/json' -d '{"text":"written on one node"}' "$base/notes")
echo "  POST /notes  $note"
for _ in $(seq 1 "$scale"); do
  echo "  GET /notes   $(curl -s -H "authorization: Bearer $token" "$base/notes" | json '`${o.notes.length} notes, the last "${o.notes.at(-1)?.text}" from ${o.notes.at(-1)?.node}; served by ${o.node}`')"
done

cat <<TOUR

The notes API (examples/notes-api) is up: $scale replicas behind HAProxy at $base.
Its users: alice / alice-password (editor), bob / bob-password (reader: may not write).
  log in      curl -s -H 'content-type: application/json' -d '{"username":"alice","password":"alice-password"}' $base/login
  who am I    curl -s -H "authorization: Bearer \$token" $base/whoami        (user, role claim, node)
  notes       curl -s -H "authorization: Bearer \$token" $base/notes
              curl -s -H "authorization: Bearer \$token" -H 'content-type: application/json' -d '{"text":"hi"}' $base/notes
              curl -s -X DELETE -H "authorization: Bearer \$token" $base/notes/<id>
  keyfleet's  $base/healthz   $base/.well-known/jwks.json   POST $base/logout
Operate it as keyfleet's own cluster (the CLI comes with the library, in the app's image),
from the repository's root, with the override in every compose command:
  export COMPOSE_FILE=compose.yaml:examples/notes-api/compose.notes.yaml
  docker compose exec app keyfleet status
  docker compose exec app keyfleet rotate          nobody is logged out
  docker compose exec app keyfleet revoke <kid>    refused on every node at once
  docker compose up -d --scale app=5
  docker compose down -v                           stop (and forget the ring and the notes)
TOUR
