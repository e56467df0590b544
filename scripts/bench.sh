#!/usr/bin/env bash
# `npm run bench`: every benchmark under bench/, one after another (they
# compete for the same 2 cores, so never in parallel). Each prints absolute
# figures and the ratio to its target measured in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
for bench in bench/*.ts; do
  [[ -n ${1:-} && $bench != *"$1"* ]] && continue
  echo "== $bench"
  node --import tsx "$bench"
done
