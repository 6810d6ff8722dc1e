#!/usr/bin/env bash
# Builds the notes API's image, keyfleet/notes-api:${KEYFLEET_TAG:-dev}, the way the app's own
# CI would: keyfleet packed into a tarball (what `npm publish` would upload), installed from
# it into the app's staging copy (build/notes-api) with the app's committed lock file, the
# app compiled against keyfleet's published types, dev dependencies pruned, then the image
# built from that directory (npm has no registry inside `docker build` here).
# Idempotent and quick when nothing changed: the image carries a hash of its inputs.
# Called by scripts/bootstrap.sh, `npm run demo -- --app examples/notes-api` and its test.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
say() { printf 'notes-api: %s\n' "$*" >&2; }

TAG=${KEYFLEET_TAG:-dev}
IMAGE=keyfleet/notes-api:$TAG
BASE_IMAGE=${BASE_IMAGE:-$(grep -s '^BASE_IMAGE=' .env | cut -d= -f2 || true)}
BASE_IMAGE=${BASE_IMAGE:-debian:trixie-slim}
SRC=examples/notes-api
STAGE=build/notes-api
NPM_FLAGS=(--no-audit --no-fund --loglevel=error)

# 1. keyfleet as its users get it: `npm pack` of the repository (compiled first if needed),
# or the tarball KEYFLEET_TGZ names (another version of keyfleet).
mkdir -p build
if [ -n "${KEYFLEET_TGZ:-}" ]; then
  tarball=$KEYFLEET_TGZ
else
  # Compiled only when app/src changed since (bootstrap has just compiled it), so the pack
  # skips the prepack script's full rebuild.
  if [ ! -f dist/index.js ] || [ -n "$(find app/src package.json tsconfig.json -newer dist/index.js -print -quit)" ]; then
    npm run --silent build
  fi
  rm -rf build/.pack
  mkdir -p build/.pack
  npm pack --ignore-scripts --pack-destination build/.pack "${NPM_FLAGS[@]}" >/dev/null
  tarball=$(ls build/.pack/*.tgz)
fi
cmp -s "$tarball" build/keyfleet.tgz 2>/dev/null || cp "$tarball" build/keyfleet.tgz
rm -rf build/.pack

# 2. Nothing to do when the image was built from these very inputs.
inputs=$( { sha256sum build/keyfleet.tgz; (cd "$SRC" && find package.json package-lock.json tsconfig.json users.json Dockerfile src -type f | sort | xargs sha256sum); echo "$BASE_IMAGE"; } | sha256sum | cut -c1-32)
if [ "$(docker image inspect -f '{{index .Config.Labels "keyfleet.inputs"}}' "$IMAGE" 2>/dev/null || true)" = "$inputs" ]; then
  say "$IMAGE is up to date"
  exit 0
fi

# 3. The app's staging copy, at the same depth as the example, so `file:../../build/keyfleet.tgz` holds.
say "installing keyfleet from its tarball into $STAGE and compiling the app"
rm -rf "$STAGE/src" "$STAGE/dist"
mkdir -p "$STAGE"
cp -r "$SRC"/{package.json,package-lock.json,tsconfig.json,users.json,Dockerfile,src} "$STAGE/"
# The lock file pins every registry package, so `npm ci --offline` needs nothing but npm's
# cache. Its keyfleet entry has no integrity on purpose (npm would otherwise install whatever
# its cache holds under that hash, not the tarball just packed). When keyfleet's dependencies
# have changed since the lock was written (`npm ls` finds one missing), the entry is dropped
# and `npm install` reads the tarball's package.json afresh, the rest still pinned.
(
  cd "$STAGE"
  rm -rf node_modules
  if ! { npm ci --offline "${NPM_FLAGS[@]}" >/dev/null 2>&1 && npm ls --all --omit=dev >/dev/null 2>&1; }; then
    say "keyfleet's dependencies differ from package-lock.json: installing them afresh (refresh the example's lock file)"
    node -e '
      const fs = require("fs"), lock = JSON.parse(fs.readFileSync("package-lock.json", "utf8"));
      delete lock.packages["node_modules/keyfleet"];
      fs.writeFileSync("package-lock.json", JSON.stringify(lock, null, 2) + "\n");
    '
    rm -rf node_modules
    npm install --prefer-offline "${NPM_FLAGS[@]}" >/dev/null
  fi
  ./node_modules/.bin/tsc -p .
  npm prune --omit=dev --offline "${NPM_FLAGS[@]}" >/dev/null
)

# 4. The image.
say "building $IMAGE (base $BASE_IMAGE)"
docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --label "keyfleet.inputs=$inputs" -t "$IMAGE" "$STAGE" >/dev/null
say "built $IMAGE"
