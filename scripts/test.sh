#!/usr/bin/env bash
# `npm test`: set-up, type check, lint, then every suite against the embedded
# defaults AND a real PostgreSQL server and a real S3 server (Ceph radosgw),
# which this script starts and stops itself.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --test

state=$(mktemp -d /tmp/kiln-test-services.XXXXXX)
chmod 755 "$state"
starters=()
cleanup() {
  # A failure before the servers finished starting (a type error, say) must
  # not stop them half-way: their start scripts would go on and leave daemons.
  ((${#starters[@]} > 0)) && { wait "${starters[@]}" 2>/dev/null || true; }
  bash scripts/services/stop-ceph.sh "$state/ceph" >/dev/null 2>&1 || true
  bash scripts/services/stop-postgres.sh "$state/postgres" >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT

# Ceph takes the longest to start: let it come up while we type-check and lint.
# Ctrl-C (or a TERM to the group) reaches the starters too: one cut off half-way
# would leave daemons behind, and one forked but not yet exec'd would run our
# EXIT trap. So they start with INT, TERM and HUP ignored (an ignored signal stays
# ignored across fork and exec); cleanup waits for them, then stops the servers.
trap '' INT TERM HUP
bash scripts/services/start-ceph.sh "$state/ceph" >"$state/ceph.env" 2>"$state/ceph.log" &
ceph_pid=$!
bash scripts/services/start-postgres.sh "$state/postgres" >"$state/postgres.env" 2>"$state/postgres.log" &
postgres_pid=$!
starters=("$ceph_pid" "$postgres_pid")
trap - INT TERM HUP

echo "== type check" >&2
npx tsc --noEmit
npx tsc --noEmit -p web
echo "== lint" >&2
npx eslint --max-warnings 0 .

wait "$postgres_pid" || { cat "$state/postgres.log" >&2; echo "PostgreSQL did not start" >&2; exit 1; }
wait "$ceph_pid" || { tail -n 40 "$state/ceph.log" >&2; echo "Ceph radosgw did not start" >&2; exit 1; }
set -a
# shellcheck disable=SC1091
source "$state/postgres.env"
source "$state/ceph.env"
set +a
# The suites read these names, so a plain `kiln serve` in this shell stays embedded.
export KILN_TEST_DATABASE_URL=$DATABASE_URL KILN_TEST_S3_ENDPOINT=$S3_ENDPOINT KILN_TEST_S3_BUCKET=$S3_BUCKET \
  KILN_TEST_S3_ACCESS_KEY_ID=$S3_ACCESS_KEY_ID KILN_TEST_S3_SECRET_ACCESS_KEY=$S3_SECRET_ACCESS_KEY KILN_TEST_S3_REGION=$S3_REGION
unset DATABASE_URL S3_ENDPOINT S3_BUCKET S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY S3_REGION S3_FORCE_PATH_STYLE

echo "== tests" >&2
mapfile -t files < <(find test -name '*.test.ts' | sort)
# Not `exec`: the EXIT trap above must still run to stop PostgreSQL and Ceph.
status=0
node --import tsx --test --test-concurrency="${KILN_TEST_CONCURRENCY:-2}" --test-reporter=spec "${files[@]}" || status=$?
exit "$status"
