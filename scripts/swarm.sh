#!/usr/bin/env bash
# keyfleet on Docker Swarm (deploy/swarm/stack.yaml), after scripts/bootstrap.sh.
#   scripts/swarm.sh         make this engine a single-node swarm if it is in none, deploy
#                            the stack (STACK, default keyfleet) and print where it listens
#   scripts/swarm.sh down    remove the stack; leave the swarm only if this script made it
# Ports: SWARM_LB_PORT (18080), SWARM_LB_TLS_PORT (18443), SWARM_STATS_PORT (18404).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
STACK=${STACK:-keyfleet}
MARK=keyfleet.swarm-init  # a node label: it goes away with the swarm itself

if [ "${1:-up}" = down ]; then
  docker stack rm "$STACK" || true
  # Wait (up to 90 s) for its containers and networks to go before leaving or redeploying.
  for _ in $(seq 90); do
    [ -z "$(docker ps -aq --filter "label=com.docker.stack.namespace=$STACK")$(docker network ls -q --filter "label=com.docker.stack.namespace=$STACK")" ] && break
    sleep 1
  done
  if [ "$(docker node inspect self --format "{{index .Spec.Labels \"$MARK\"}}" 2>/dev/null)" = 1 ]; then
    docker swarm leave --force
  fi
  echo "swarm.sh: $STACK removed (its Redis volume ${STACK}_redis-data is kept)"
  exit 0
fi

[ -f .env ] && [ -s secrets/master.key ] || { echo "swarm.sh: run scripts/bootstrap.sh first" >&2; exit 1; }
if [ "$(docker info --format '{{.Swarm.LocalNodeState}}')" != active ]; then
  docker swarm init --advertise-addr "${SWARM_ADVERTISE_ADDR:-127.0.0.1}" >/dev/null
  docker node update --label-add "$MARK=1" "$(docker info --format '{{.Swarm.NodeID}}')" >/dev/null
fi
# `docker stack deploy` reads no .env: export the Redis passwords from it.
set -a; . ./.env; set +a
docker stack deploy --resolve-image never --detach=true -c deploy/swarm/stack.yaml "$STACK"
echo "swarm.sh: https://localhost:${SWARM_LB_TLS_PORT:-18443} (http://127.0.0.1:${SWARM_LB_PORT:-18080} redirects)  stats http://127.0.0.1:${SWARM_STATS_PORT:-18404} (admin, SWARM_STATS_PASSWORD in .env)"
echo "swarm.sh: docker service ls; docker service scale ${STACK}_app=5; scripts/swarm.sh down"
