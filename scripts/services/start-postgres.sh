#!/usr/bin/env bash
# Starts a throwaway PostgreSQL 15 server for tests, with all its state in
# <state-dir>, listening on 127.0.0.1 only with trust auth.
#
# Usage: scripts/services/start-postgres.sh <state-dir>
# Prints exactly one line on stdout:
#   DATABASE_URL=postgres://postgres@127.0.0.1:PORT/kiln_test
# Everything else goes to stderr. Running it again while the server is up
# just prints the same line (idempotent).
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
DB_NAME=kiln_test
FIRST_PORT=${KILN_PG_FIRST_PORT:-15432}

log() { echo "start-postgres: $*" >&2; }
die() {
  log "ERROR: $*"
  if [[ -n ${LOG_FILE:-} && -f $LOG_FILE ]]; then
    log "last lines of $LOG_FILE:"
    tail -n 30 "$LOG_FILE" >&2 || true
  fi
  exit 1
}

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 <state-dir>" >&2; exit 2; }
[[ -x $PG_BIN/postgres ]] || die "PostgreSQL 15 not found in $PG_BIN"
id postgres >/dev/null 2>&1 || die "there is no 'postgres' user (install postgresql-15)"

mkdir -p "$1"
STATE=$(cd "$1" && pwd -P)
DATA=$STATE/data
SOCK=$STATE/socket
LOG_FILE=$STATE/postgres.log
PORT_FILE=$STATE/port

# postgres refuses to run as root, so everything below runs as the postgres
# user, which must own the state dir and be able to reach it.
# fd 9 (the lock) is closed so the detached postmaster does not hold it.
as_pg() { runuser -u postgres -- "$@" </dev/null 9>&-; }

# Starts the server with none of our descriptors but stdio: the postmaster
# outlives us and must not keep a caller's pipe (or our lock) open.
as_pg_detached() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec runuser -u postgres -- "$@"
  ) </dev/null
}
mkdir -p "$SOCK"
chown postgres:postgres "$STATE" "$SOCK"
chmod 700 "$STATE"
as_pg test -w "$STATE" || die "user postgres cannot write $STATE (is a parent directory, e.g. /root, closed to other users?)"

# Serialises concurrent invocations for the same state dir.
exec 9>"$STATE/.lock"
flock -w 120 9 || die "another start/stop holds $STATE/.lock"

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pg_ctl status is fooled by a zombie postmaster (kill -0 succeeds on it),
# which is what a killed server becomes where pid 1 does not reap orphans.
is_running() {
  local pid stat
  [[ -s $DATA/postmaster.pid ]] || return 1
  pid=$(head -n 1 "$DATA/postmaster.pid")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DATA"
}

init_cluster() {
  log "initialising a new cluster in $DATA"
  rm -rf "$DATA"
  # Local socket + 127.0.0.1 only; trust is fine for a throwaway test server.
  as_pg "$PG_BIN/initdb" -D "$DATA" -U postgres --auth-local=trust --auth-host=trust \
    --encoding=UTF8 --locale=C.UTF-8 --no-sync >&2 || die "initdb failed"
  cat >"$DATA/pg_hba.conf" <<HBA
local all all trust
host  all all 127.0.0.1/32 trust
HBA
  # Durability is pointless for test data and fsync is the slow part on a
  # small VM; the socket lives in the state dir because /var/run/postgresql
  # may not exist on a machine where the server package is not configured.
  cat >>"$DATA/postgresql.conf" <<CONF

# --- kiln test server ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$SOCK'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 200
logging_collector = off
CONF
  chown postgres:postgres "$DATA/pg_hba.conf" "$DATA/postgresql.conf"
}

# Tries ports upward from FIRST_PORT; the bind can still lose a race against
# another process, so a failed start moves on to the next port.
start_server() {
  local port=$FIRST_PORT tries=0
  while ((tries < 50)); do
    if ! port_in_use "$port"; then
      # Lock files left by a killed server (or a container restart) would
      # block the start; postgres checks their pid with kill(0), which a
      # zombie passes. The socket dir is private to this state dir.
      rm -f "$DATA/postmaster.pid" "$SOCK"/.s.PGSQL.*
      : >"$LOG_FILE" && chown postgres:postgres "$LOG_FILE"
      if as_pg_detached "$PG_BIN/pg_ctl" start -D "$DATA" -l "$LOG_FILE" -w -t 60 -o "-p $port" >&2; then
        echo "$port" >"$PORT_FILE"
        return 0
      fi
      grep -q 'could not bind\|could not create listen socket' "$LOG_FILE" || die "postgres did not start"
      log "port $port was taken, trying the next one"
    fi
    port=$((port + 1)) tries=$((tries + 1))
  done
  die "no free port found from $FIRST_PORT upward"
}

[[ -f $DATA/PG_VERSION ]] || init_cluster

if is_running && [[ -f $PORT_FILE ]]; then
  PORT=$(<"$PORT_FILE")
  log "already running on port $PORT"
else
  start_server
  PORT=$(<"$PORT_FILE")
fi

# pg_ctl -w already waits, but this checks the TCP listener the tests use.
for _ in $(seq 1 60); do
  as_pg "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" && break
  sleep 0.5
done
as_pg "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" || die "postgres does not accept connections on 127.0.0.1:$PORT"

psql_q() { as_pg "$PG_BIN/psql" -X -q -t -A -h 127.0.0.1 -p "$PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 -c "$1"; }
if [[ $(psql_q "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'") != 1 ]]; then
  psql_q "CREATE DATABASE $DB_NAME" >&2 || die "could not create database $DB_NAME"
fi

echo "DATABASE_URL=postgres://postgres@127.0.0.1:$PORT/$DB_NAME"
