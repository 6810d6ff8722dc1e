#!/bin/sh
# Writes the ACL users from the environment, then runs Redis with them.
#   keyfleet  what the nodes and the CLI use: keyfleet:* keys and channels only, no
#             dangerous commands (FLUSHALL, KEYS, CONFIG, DEBUG, ...).
#   admin     for operators and tests (INFO commandstats, FLUSHALL).
#   default   the same rights and password as admin. It must not be switched off: Redis 8.0
#             replays MULTI/EXEC blocks from the AOF as the default user, and with that user
#             off every transaction (and so every Lua script's writes) is dropped on restart.
set -eu
: "${REDIS_PASSWORD:?REDIS_PASSWORD is required (scripts/bootstrap.sh writes one to .env)}"
umask 077
if [ -z "${REDIS_ADMIN_PASSWORD:-}" ]; then
  REDIS_ADMIN_PASSWORD=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
fi
users=/tmp/keyfleet-users.conf
{
  echo "user default on >${REDIS_ADMIN_PASSWORD} ~* &* +@all"
  echo "user keyfleet on >${REDIS_PASSWORD} ~keyfleet:* resetchannels &keyfleet:* -@all +@read +@write +@keyspace +@pubsub +@scripting +@transaction +@connection +@blocking +@stream +@list +@string -@dangerous +info +client|setname +client|setinfo"
  echo "user admin on >${REDIS_ADMIN_PASSWORD} ~* &* +@all"
} >"$users"
exec redis-server /etc/keyfleet/redis.conf --include "$users" "$@"
