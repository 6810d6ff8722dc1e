#!/usr/bin/env bash
# Prepares a machine to run keyfleet: Docker Engine, Compose v2, base images, the master key,
# npm dependencies, the compiled app, the three images and those of the examples (two resource
# servers, the notes API). Idempotent: every step checks before it acts, so a second run only verifies.
# `npm run demo` and `npm test` call it.
#
#   scripts/bootstrap.sh            everything
#   scripts/bootstrap.sh --no-build  environment only (Docker, Compose, base image, secrets)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

BUILD=1
for arg in "$@"; do
  case "$arg" in
    --no-build) BUILD=0 ;;
    *) echo "bootstrap: unknown option $arg" >&2; exit 2 ;;
  esac
done

LOCAL_BASE_IMAGE=keyfleet/debian:trixie
REGISTRY_BASE_IMAGE=debian:trixie-slim
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
COMPOSE_PLUGIN_DIR=/usr/local/lib/docker/cli-plugins
LOG_DIR=${KEYFLEET_LOG_DIR:-/var/log/keyfleet}

say() { printf 'bootstrap: %s\n' "$*" >&2; }
need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    say "$1 needs root; run this script as root (or install it yourself)"
    exit 1
  fi
}

apt_updated=0
apt_install() {
  need_root "installing $*"
  if [ "$apt_updated" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- Docker Engine -------------------------------------------------------------------------
ensure_docker() {
  if docker info >/dev/null 2>&1; then return; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    say "installing Docker Engine (Debian package docker.io)"
    apt_install docker.io iptables
  fi
  say "starting dockerd"
  mkdir -p "$LOG_DIR"
  if command -v systemctl >/dev/null 2>&1 && systemctl is-system-running >/dev/null 2>&1; then
    systemctl start docker
  else
    # No init system here (a container or a CI sandbox): run the daemon detached.
    nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 &
  fi
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && return
    sleep 1
  done
  say "dockerd did not come up within 60 s; see $LOG_DIR/dockerd.log"
  tail -n 20 "$LOG_DIR/dockerd.log" >&2 || true
  exit 1
}

# --- Base image ----------------------------------------------------------------------------
# With a registry we use the official slim image; without one we build the same Debian
# release from Debian's package archive and record the choice in .env for compose and tests.
ensure_base_image() {
  local base
  if docker image inspect "$REGISTRY_BASE_IMAGE" >/dev/null 2>&1; then
    base=$REGISTRY_BASE_IMAGE
  elif docker image inspect "$LOCAL_BASE_IMAGE" >/dev/null 2>&1; then
    base=$LOCAL_BASE_IMAGE
  elif timeout 30 docker pull -q "$REGISTRY_BASE_IMAGE" >/dev/null 2>&1; then
    base=$REGISTRY_BASE_IMAGE
  else
    say "no container registry reachable: building $LOCAL_BASE_IMAGE with debootstrap (air-gapped mode)"
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    local dir
    dir=$(mktemp -d /tmp/keyfleet-rootfs.XXXXXX)
    debootstrap --variant=minbase trixie "$dir" "$DEBIAN_MIRROR" >"$dir.log" 2>&1 || {
      tail -n 20 "$dir.log" >&2; exit 1; }
    # Keep images small: no docs or man pages from later apt installs.
    printf 'path-exclude /usr/share/doc/*\npath-exclude /usr/share/man/*\n' \
      >"$dir/etc/dpkg/dpkg.cfg.d/01-nodoc"
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
    tar -C "$dir" -c . | docker import - "$LOCAL_BASE_IMAGE" >/dev/null
    rm -rf "$dir" "$dir.log"
    base=$LOCAL_BASE_IMAGE
  fi
  set_env BASE_IMAGE "$base"
  if [ "$base" = "$LOCAL_BASE_IMAGE" ]; then set_env KEYFLEET_AIRGAPPED 1; else set_env KEYFLEET_AIRGAPPED 0; fi
  BASE_IMAGE=$base
}

# .env holds the Redis and stats passwords: created, and kept, readable by its owner only.
set_env() {
  local key=$1 value=$2
  (umask 077 && touch .env)
  chmod 600 .env
  if grep -q "^$key=" .env; then
    sed -i "s|^$key=.*|$key=$value|" .env
  else
    printf '%s=%s\n' "$key" "$value" >>.env
  fi
}

# --- Compose v2 ----------------------------------------------------------------------------
ensure_compose() {
  if docker compose version >/dev/null 2>&1; then return; fi
  need_root "installing the Compose v2 plugin"
  say "installing Compose v2 from Debian 13's docker-compose package"
  local tag=keyfleet/compose-plugin:trixie cid
  printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null\n' \
    "$BASE_IMAGE" | docker build -q -t "$tag" - >/dev/null
  cid=$(docker create "$tag" true)
  mkdir -p "$COMPOSE_PLUGIN_DIR"
  docker cp "$cid:/usr/libexec/docker/cli-plugins/docker-compose" "$COMPOSE_PLUGIN_DIR/docker-compose"
  docker rm "$cid" >/dev/null
  chmod 755 "$COMPOSE_PLUGIN_DIR/docker-compose"
  docker compose version >/dev/null
}

# --- Secrets -------------------------------------------------------------------------------
ensure_master_key() {
  mkdir -p secrets
  chmod 700 secrets
  if [ ! -s secrets/master.key ]; then
    say "generating secrets/master.key (git-ignored; back it up: it decrypts the key ring)"
    (umask 077 && node -e "process.stdout.write(require('crypto').randomBytes(32).toString('base64'))" >secrets/master.key)
  fi
  # Owner-only until secure_secret_files hands it to the container's user.
  chmod 400 secrets/master.key
  # Redis ACL passwords for the demo cluster, and the HAProxy stats password of the Swarm
  # stack (whose ports listen on every address; compose's stats page is on 127.0.0.1 and asks
  # for a password only if STATS_PASSWORD is set), kept in the git-ignored .env compose reads.
  local name
  for name in REDIS_PASSWORD REDIS_ADMIN_PASSWORD SWARM_STATS_PASSWORD; do
    grep -q "^$name=" .env 2>/dev/null || set_env "$name" "$(node -e "process.stdout.write(require('crypto').randomBytes(24).toString('base64url'))")"
  done
}

# --- TLS certificate for the balancer ------------------------------------------------------
# Self-signed for localhost and 127.0.0.1, made once: a leaf (CA:FALSE, server auth only),
# so a client told to trust it for the demo trusts nothing else signed with its key. A real
# certificate is a file swap: put its chain and key, PEM, in secrets/tls/haproxy.pem
# (certificate first). The demo certificate of older versions was a CA (CA:TRUE): remade.
DEMO_TLS_SUBJECT="/CN=localhost/O=keyfleet demo"
ensure_tls_certificate() {
  local dir=secrets/tls
  command -v openssl >/dev/null 2>&1 || apt_install openssl
  if [ -s "$dir/haproxy.pem" ]; then
    # Only our own demo certificate is ever replaced, never an operator's.
    openssl x509 -in "$dir/haproxy.pem" -noout -subject -nameopt compat 2>/dev/null | grep -q "O=keyfleet demo" || return 0
    openssl x509 -in "$dir/haproxy.pem" -noout -ext basicConstraints 2>/dev/null | grep -q "CA:TRUE" || return 0
    say "the demo TLS certificate in $dir is a CA certificate (CA:TRUE, made by an older bootstrap): remaking it as a leaf"
  fi
  say "generating a self-signed TLS certificate for the balancer ($dir/cert.pem)"
  mkdir -p "$dir"
  (
    umask 077
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
      -subj "$DEMO_TLS_SUBJECT" \
      -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
      -addext "basicConstraints=critical,CA:FALSE" \
      -addext "keyUsage=critical,digitalSignature" \
      -addext "extendedKeyUsage=serverAuth" \
      -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null
    cat "$dir/cert.pem" "$dir/key.pem" >"$dir/haproxy.pem.new"
    mv "$dir/haproxy.pem.new" "$dir/haproxy.pem"
  )
  rm -f "$dir/key.pem"
  # cert.pem is public (clients trust it); haproxy.pem holds the private key.
  chmod 644 "$dir/cert.pem"
  chmod 400 "$dir/haproxy.pem"
}

# --- Secret files, readable by their container's user alone ---------------------------------
# compose mounts secrets/master.key and secrets/tls/haproxy.pem from the host as they are
# (bind mounts: a file secret's mode and owner cannot be set in compose), so each is owned by
# the user its container runs as, mode 0400. The ids come from the images themselves.
image_ids() {
  local ids
  ids=$(docker run --rm --entrypoint sh "$1" -c 'echo "$(id -u):$(id -g)"' 2>/dev/null) || ids=""
  printf '%s\n' "${ids:-$2}"
}
secure_secret_files() {
  local tag=${KEYFLEET_TAG:-dev}
  if [ "$(id -u)" -ne 0 ]; then
    say "not root: secrets/master.key and secrets/tls/haproxy.pem keep their owner; make them readable by uid 1000 and haproxy's uid yourself (mode 0400)"
    return
  fi
  chown "$(image_ids "keyfleet/app:$tag" 1000:999)" secrets/master.key
  chmod 400 secrets/master.key
  chown "$(image_ids "keyfleet/haproxy:$tag" 100:101)" secrets/tls/haproxy.pem
  chmod 400 secrets/tls/haproxy.pem
}

# --- App and images ------------------------------------------------------------------------
build_app() {
  if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
    # npm ci: exactly what package-lock.json says (it lists every platform's optional
    # packages), and the work tree stays clean.
    say "npm ci (from package-lock.json)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
  npm run --silent build
  # The image gets compiled JS and production dependencies only: npm cannot reach its
  # registry from inside a container here, so the host prepares build/app.
  local stage=build/app
  mkdir -p "$stage"
  cp package.json package-lock.json "$stage/"
  if [ ! -d "$stage/node_modules" ] || [ package-lock.json -nt "$stage/node_modules/.package-lock.json" ]; then
    (cd "$stage" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  fi
  rm -rf "$stage/dist"
  cp -r dist "$stage/dist"
  # The example resource server (examples/resource-server) has dependencies of its own.
  local rs=build/resource-server
  mkdir -p "$rs"
  cp examples/resource-server/{package.json,package-lock.json,server.mjs,Dockerfile} "$rs/"
  if [ ! -d "$rs/node_modules" ] || [ "$rs/package-lock.json" -nt "$rs/node_modules/.package-lock.json" ]; then
    (cd "$rs" && npm install --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error)
  fi
}

# KEYFLEET_TAG (default dev) names the images, so several checkouts can share one daemon.
build_images() {
  local tag=${KEYFLEET_TAG:-dev}
  say "building images keyfleet/*:$tag (base $BASE_IMAGE)"
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "keyfleet/redis:$tag" redis >/dev/null
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "keyfleet/haproxy:$tag" haproxy >/dev/null
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "keyfleet/app:$tag" -f app/Dockerfile . >/dev/null
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "keyfleet/prometheus:$tag" prometheus >/dev/null
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "keyfleet/resource-server:$tag" build/resource-server >/dev/null
  docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" -t "keyfleet/resource-server-python:$tag" examples/resource-server-python >/dev/null
  # An app of somebody else's on the keyfleet library (npm run demo -- --app examples/notes-api):
  # keyfleet packed and installed from its tarball, the app compiled, its image built.
  bash examples/notes-api/build.sh
}

ensure_docker
ensure_base_image
ensure_compose
ensure_master_key
ensure_tls_certificate
if [ "$BUILD" -eq 1 ]; then
  build_app
  build_images
fi
secure_secret_files
say "ready (base image $BASE_IMAGE)"
