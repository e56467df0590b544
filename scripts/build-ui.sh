#!/usr/bin/env bash
# Bundles the web UI (web/ → web/dist/) with Vite when the bundle is missing
# or older than any of its sources; does nothing (quickly) otherwise.
# `kiln serve` serves web/dist at /. The bundle is build output: never committed.
set -euo pipefail
cd "$(dirname "$0")/.."

stamp=web/dist/index.html
say() { echo "kiln setup: $*" >&2; }

stale() {
  [[ -f $stamp ]] || return 0
  # The UI also compiles the API's shared types and the CLI's pure helpers it imports.
  [[ -n $(find web/index.html web/vite.config.ts web/src web/public src/api/types.ts src/api/schemas.ts src/cli/sse.ts src/cli/rollback-target.ts src/format package-lock.json \
    -newer "$stamp" -print -quit 2>/dev/null) ]]
}

if stale; then
  say "building the web UI"
  npx vite build --config web/vite.config.ts >&2
fi
