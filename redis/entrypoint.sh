#!/bin/sh
# Writes the ACL users from the environment, then runs Redis with them.
# Roles, for the Sentinel layout (compose.ha.yaml):
#   REDIS_REPLICA_OF=host          start as a replica of host:6379
#   REDIS_SENTINEL_MONITOR=host    run a Sentinel watching the master at host:6379
#   REDIS_SENTINEL_QUORUM=2        Sentinels that must agree the master is down
# TLS (optional, one Redis; the nodes then use rediss://, docs/runbook.md):
#   REDIS_TLS_CERT_FILE, REDIS_TLS_KEY_FILE   serve TLS only, on 6379 (plain port off)
# Users:
#   keyfleet  what the nodes and the CLI use: keyfleet:* keys and channels only, no
#             dangerous commands (FLUSHALL, KEYS, CONFIG, DEBUG, ...), and nothing the
#             nodes do not use: scripts run by EVAL/EVALSHA only (no SCRIPT FLUSH/KILL/LOAD,
#             no FUNCTION or FCALL: a flushed cache or a loaded library is another node's
#             problem), no DUMP (key values serialised out), MOVE, COPY, RANDOMKEY, OBJECT,
#             MEMORY. SCAN stays: heartbeats (cluster/heartbeat.ts) list the live nodes
#             with it. test/integration/hostile.test.ts checks both sides.
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
  echo "user keyfleet on >${REDIS_PASSWORD} ~keyfleet:* resetchannels &keyfleet:* -@all +@read +@write +@keyspace +@pubsub +@scripting +@transaction +@connection +@blocking +@stream +@list +@string -@dangerous +info +client|setname +client|setinfo -script -function -fcall -fcall_ro -dump -move -copy -randomkey -object -memory"
  echo "user admin on >${REDIS_ADMIN_PASSWORD} ~* &* +@all"
} >"$users"

if [ -n "${REDIS_SENTINEL_MONITOR:-}" ]; then
  conf=/data/sentinel.conf
  # Sentinel rewrites its file as it learns the topology; write it only the first time.
  if [ ! -s "$conf" ]; then
    cat >"$conf" <<EOF
port 26379
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel monitor keyfleet ${REDIS_SENTINEL_MONITOR} 6379 ${REDIS_SENTINEL_QUORUM:-2}
sentinel auth-user keyfleet admin
sentinel auth-pass keyfleet ${REDIS_ADMIN_PASSWORD}
sentinel down-after-milliseconds keyfleet ${REDIS_SENTINEL_DOWN_AFTER_MS:-2000}
sentinel failover-timeout keyfleet ${REDIS_SENTINEL_FAILOVER_TIMEOUT_MS:-10000}
sentinel parallel-syncs keyfleet 1
EOF
  fi
  exec redis-server "$conf" --sentinel "$@"
fi

# Replicas (and a master that Sentinel later turns into one) authenticate as admin.
set -- --masteruser admin --masterauth "$REDIS_ADMIN_PASSWORD" "$@"
if [ -n "${REDIS_REPLICA_OF:-}" ]; then
  set -- --replicaof "$REDIS_REPLICA_OF" 6379 "$@"
fi
if [ -n "${REDIS_TLS_CERT_FILE:-}" ]; then
  : "${REDIS_TLS_KEY_FILE:?REDIS_TLS_KEY_FILE is required with REDIS_TLS_CERT_FILE}"
  # TLS only: the password never crosses the network in clear. Clients are not asked for a
  # certificate (they authenticate with their ACL password, inside TLS).
  set -- --port 0 --tls-port 6379 --tls-cert-file "$REDIS_TLS_CERT_FILE" --tls-key-file "$REDIS_TLS_KEY_FILE" \
    --tls-auth-clients no "$@"
fi
exec redis-server /etc/keyfleet/redis.conf --include "$users" "$@"
