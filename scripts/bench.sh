#!/usr/bin/env bash
# `npm run bench [-- --json] [-- --quick] [-- --only=sandbox,pipeline,api,testbed]`:
# every benchmark behind the report (bench/report.ts), one after another
# (they compete for the same cores, so never in parallel), printed as one
# table with each target and ✓/✗; --json also writes bench/results.json.
# The other benchmarks (bench/optimize.ts, bench/throughput.ts) run on their
# own: node --import tsx bench/<name>.ts. See bench/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node --import tsx bench/report.ts "$@"
