#!/bin/sh
# Writes the ACL users from the environment, then runs Redis with them.
#   keyfleet  what the nodes and the CLI use: keyfleet:* keys and channels only, no
#             dangerous commands (FLUSHALL, KEYS, CONFIG, DEBUG, ...).
#   admin     for operators and tests (INFO commandstats, FLUSHALL); optional.
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD is required (scripts/bootstrap.sh writes one to .env)}"
umask 077
users=/tmp/keyfleet-users.conf
{
  echo "user default off"
  echo "user keyfleet on >${REDIS_PASSWORD} ~keyfleet:* resetchannels &keyfleet:* -@all +@read +@write +@keyspace +@pubsub +@scripting +@transaction +@connection +@blocking +@stream +@list +@string -@dangerous +info +client|setname +client|setinfo"
  if [ -n "${REDIS_ADMIN_PASSWORD:-}" ]; then
    echo "user admin on >${REDIS_ADMIN_PASSWORD} ~* &* +@all"
  fi
} >"$users"
exec redis-server /etc/keyfleet/redis.conf --include "$users" "$@"
