#!/usr/bin/env bash
# Stops the test server started by start-postgres.sh in <state-dir>.
# Succeeds if it is not running. The data stays; delete the dir to discard it.
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 <state-dir>" >&2; exit 2; }
[[ -d $1 ]] || { echo "stop-postgres: $1 does not exist, nothing to stop" >&2; exit 0; }
STATE=$(cd "$1" && pwd -P)
DATA=$STATE/data

exec 9>"$STATE/.lock"
flock -w 120 9 || { echo "stop-postgres: another start/stop holds $STATE/.lock" >&2; exit 1; }

# A zombie postmaster (killed, never reaped) looks alive to pg_ctl status.
postmaster_alive() {
  local pid stat
  [[ -s $DATA/postmaster.pid ]] || return 1
  pid=$(head -n 1 "$DATA/postmaster.pid")
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

if [[ -f $DATA/PG_VERSION ]] && postmaster_alive; then
  # fast = roll back open transactions and disconnect clients; tests should
  # not keep the stop waiting.
  runuser -u postgres -- "$PG_BIN/pg_ctl" stop -D "$DATA" -m fast -w -t 60 </dev/null 9>&- >&2
else
  echo "stop-postgres: not running" >&2
fi
