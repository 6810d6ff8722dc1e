#!/usr/bin/env bash
# npm test: unit tests, then integration tests against real containers (Redis, app nodes,
# HAProxy), after scripts/bootstrap.sh has made sure Docker and the images are there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/bootstrap.sh
bash scripts/ensure-chromium.sh  # the browser tests drive Debian's Chromium
# Ryuk (testcontainers' reaper) cannot be pulled here; every test stops what it starts.
export TESTCONTAINERS_RYUK_DISABLED=true

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
status=0
for project in unit integration; do
  npx vitest run --project "$project" --reporter=default --reporter=json \
    --outputFile.json="$results/$project.json" "$@" || status=$?
done

node -e '
  const fs = require("fs");
  let passed = 0, failed = 0;
  for (const file of fs.readdirSync(process.argv[1])) {
    const r = JSON.parse(fs.readFileSync(`${process.argv[1]}/${file}`, "utf8"));
    passed += r.numPassedTests; failed += r.numFailedTests + r.numPendingTests + r.numTodoTests;
  }
  console.log(`\n${passed} passed, ${failed} failed`);
' "$results"
exit "$status"
