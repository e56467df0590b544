#!/usr/bin/env bash
# Starts a throwaway single-node Ceph cluster with a real radosgw S3 endpoint
# on 127.0.0.1, everything (config, data, pid files, sockets, logs) under
# <state-dir>: one mon, one memstore OSD (data lives in RAM), one radosgw.
#
# Usage: scripts/services/start-ceph.sh <state-dir>
# Prints on stdout exactly:
#   S3_ENDPOINT=http://127.0.0.1:PORT
#   S3_BUCKET=kiln-test
#   S3_ACCESS_KEY_ID=...
#   S3_SECRET_ACCESS_KEY=...
#   S3_REGION=us-east-1
#   S3_FORCE_PATH_STYLE=true
# Everything else goes to stderr. If the cluster in <state-dir> is already up
# and answering, it prints the same lines again; otherwise it kills whatever
# is left of it and starts a fresh one (memstore data is not worth keeping).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd -P)
# Fixed test credentials: this cluster only ever listens on loopback.
ACCESS_KEY=KILNTESTACCESSKEY0001
SECRET_KEY=kilnTestSecretKey0000000000000000000001
BUCKET=kiln-test
REGION=us-east-1
RGW_NAME=client.rgw.kiln
TIMEOUT=${KILN_CEPH_TIMEOUT:-90}

log() { echo "start-ceph: $*" >&2; }
# die <message> [log file...]: fails loudly with the tail of the given logs.
die() {
  log "ERROR: $1"
  shift
  local f
  for f in "$@"; do
    [[ -s $f ]] || continue
    log "---- last lines of $f ----"
    tail -n 40 "$f" >&2 || true
  done
  # Half-started daemons would only hold ports; the logs stay for inspection.
  if [[ -n ${DAEMONS_STARTED:-} ]]; then
    "$SCRIPT_DIR/stop-ceph.sh" "$STATE" 9>&- || true
  fi
  exit 1
}

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 <state-dir>" >&2; exit 2; }
for tool in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool node flock timeout; do
  command -v "$tool" >/dev/null || die "$tool is not installed (Debian packages: ceph-mon ceph-osd radosgw ceph-common)"
done

mkdir -p "$1"
STATE=$(cd "$1" && pwd -P)
CONF=$STATE/ceph.conf
ENV_FILE=$STATE/s3.env
LOGS=$STATE/log
RUN=$STATE/run
START=$SECONDS
DEADLINE=$((SECONDS + TIMEOUT))

# Serialises concurrent start/stop for the same state dir; stop-ceph.sh
# skips its own locking when we call it while holding the lock.
exec 9>"$STATE/.lock"
flock -w 120 9 || die "another start/stop holds $STATE/.lock"
export KILN_CEPH_LOCK_HELD=1

remaining() { local r=$((DEADLINE - SECONDS)); ((r > 1)) && echo "$r" || echo 1; }

# Runs a command with no stdin and none of our other descriptors: daemons
# fork into the background and must not keep the caller's pipes (or our
# lock) open, or `$(start-ceph.sh ...)` would never return.
detached() {
  (
    for fd in /proc/$BASHPID/fd/*; do
      fd=${fd##*/}
      ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
    done
    exec "$@"
  ) </dev/null
}

ceph_cli() { timeout 20 ceph -c "$CONF" --connect-timeout 10 "$@" </dev/null 9>&-; }

daemon_alive() {
  local pidfile=$RUN/$1.pid pid
  [[ -s $pidfile ]] || return 1
  pid=$(<"$pidfile")
  # Guards against a recycled pid: the process must be one started with our config.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$CONF"
}

s3_env() {
  local port=$1
  cat <<ENV
S3_ENDPOINT=http://127.0.0.1:$port
S3_BUCKET=$BUCKET
S3_ACCESS_KEY_ID=$ACCESS_KEY
S3_SECRET_ACCESS_KEY=$SECRET_KEY
S3_REGION=$REGION
S3_FORCE_PATH_STYLE=true
ENV
}

# Proves S3 works with the test keys (signed requests), creating the bucket.
s3_ready() {
  local timeout=$1
  (
    set -a
    # shellcheck disable=SC1090
    source "$ENV_FILE"
    cd "$REPO_ROOT"
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true \
      timeout $((timeout + 15)) node --import tsx "$SCRIPT_DIR/s3-wait.ts" "$timeout" </dev/null 9>&- >&2
  )
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port <first> [excluded]: the first port from <first> upward nobody listens on.
free_port() {
  local port=$1
  while port_in_use "$port" || [[ $port == "${2:-}" ]]; do
    port=$((port + 1))
    ((port < $1 + 200)) || die "no free port from $1 upward"
  done
  echo "$port"
}

if [[ -s $ENV_FILE ]] && daemon_alive mon.a && daemon_alive osd.0 && daemon_alive "$RGW_NAME" && s3_ready 10 2>/dev/null; then
  log "already running"
  cat "$ENV_FILE"
  exit 0
fi

# Anything left from an earlier run (crashed daemons, a half start) goes.
"$SCRIPT_DIR/stop-ceph.sh" "$STATE" 9>&-
rm -rf "$STATE/mon" "$STATE/osd" "$STATE/rgw" "$RUN" "$LOGS" "$STATE/crash" "$CONF" "$ENV_FILE" "$STATE/monmap"
mkdir -p "$STATE/mon/a" "$STATE/osd/0" "$STATE/rgw" "$RUN" "$LOGS" "$STATE/crash"

MON_PORT=$(free_port "${KILN_CEPH_MON_PORT:-13300}")
RGW_PORT=$(free_port "${KILN_CEPH_RGW_PORT:-17480}" "$MON_PORT")
FSID=$(cat /proc/sys/kernel/random/uuid)
OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
log "state in $STATE, mon on 127.0.0.1:$MON_PORT, rgw on 127.0.0.1:$RGW_PORT"

# Every path is set explicitly so nothing is read from or written to
# /etc/ceph, /var/lib/ceph, /var/log/ceph or /run/ceph.
cat >"$CONF" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
# Loopback-only test cluster: no cephx keys to create, distribute or get wrong.
auth cluster required = none
auth service required = none
auth client required = none
ms bind ipv6 = false
run dir = $RUN
admin socket = $RUN/\$name.asok
log file = $LOGS/\$name.log
mon cluster log file = $LOGS/cluster.log
crash dir = $STATE/crash
keyring = $STATE/keyring
# One OSD: every pool must live with a single replica, placed on any OSD
# rather than on distinct hosts, with few placement groups (there is no mgr
# to autoscale them, and the default count exceeds the per-OSD limit once
# radosgw creates its half-dozen pools).
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on insecure global id reclaim allowed = false
# The mon batches map changes for a second by default; radosgw creates its
# pools one change at a time, which made its start ~10 s slower.
paxos propose interval = 0.05
osd crush chooseleaf type = 0
# Objects live in RAM: fast, needs no disk preparation, gone on stop.
osd objectstore = memstore
memstore device bytes = 2147483648

[mon]
mon data = $STATE/mon/\$id
pid file = $RUN/\$name.pid

[osd]
osd data = $STATE/osd/\$id
pid file = $RUN/\$name.pid

[$RGW_NAME]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $STATE/rgw
pid file = $RUN/\$name.pid
# Without this radosgw keeps retrying authentication with the mon for
# minutes before it serves anything (its default prefers "secure" mode).
ms mon client mode = crc secure
CONF

step() { log "$(printf '%3ds' $((SECONDS - START))) $*"; }

# launch <name> <command...>: starts a daemon in the background. A Ceph
# daemon's first process only exits once the forked daemon finished its
# init, which can block for minutes (radosgw looping on auth), so we never
# wait for it directly: wait_until watches it against the deadline.
declare -A LAUNCHER=()
launch() {
  local name=$1
  shift
  detached "$@" >>"$LOGS/$name.out" 2>&1 &
  LAUNCHER[$name]=$!
}

# Dies at once if the daemon's launch process already exited with an error.
check_launch() {
  local name=$1 pid=${LAUNCHER[$1]:-} rc=0
  [[ -n $pid ]] || return 0
  kill -0 "$pid" 2>/dev/null && return 0
  wait "$pid" || rc=$?
  unset "LAUNCHER[$name]"
  ((rc == 0)) || die "$name exited with status $rc while starting" "$LOGS/$name.out" "$LOGS/$name.log"
}

# wait_until <what> <daemon> <command...>: polls the command until the deadline.
wait_until() {
  local what=$1 name=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    check_launch "$name"
    ((SECONDS < DEADLINE)) || die "$what did not happen within ${TIMEOUT}s" "$LOGS/$name.out" "$LOGS/$name.log" "$LOGS/cluster.log"
    sleep 0.2
  done
}

step "creating the monitor"
DAEMONS_STARTED=1
monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON_PORT]" "$STATE/monmap" >&2 ||
  die "monmaptool failed"
ceph-mon -c "$CONF" --mkfs -i a --monmap "$STATE/monmap" </dev/null >>"$LOGS/mon.a.out" 2>&1 ||
  die "ceph-mon --mkfs failed" "$LOGS/mon.a.out" "$LOGS/mon.a.log"
launch mon.a ceph-mon -c "$CONF" -i a
wait_until "the monitor answering" mon.a ceph_cli mon stat

step "creating the OSD"
OSD_ID=$(ceph_cli osd new "$OSD_UUID" 2>>"$LOGS/osd.0.out") || die "ceph osd new failed" "$LOGS/osd.0.out"
[[ $OSD_ID == 0 ]] || die "expected OSD id 0, got '$OSD_ID'"
ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$OSD_UUID" </dev/null >>"$LOGS/osd.0.out" 2>&1 ||
  die "ceph-osd --mkfs failed" "$LOGS/osd.0.out" "$LOGS/osd.0.log"
launch osd.0 ceph-osd -c "$CONF" -i 0
osd_up() { ceph_cli osd stat -f json | grep -q '"num_up_osds":1'; }
wait_until "the OSD coming up" osd.0 osd_up

step "starting radosgw"
launch "$RGW_NAME" radosgw -c "$CONF" -n "$RGW_NAME"
rgw_listening() { daemon_alive "$RGW_NAME" && port_in_use "$RGW_PORT"; }
wait_until "radosgw listening on 127.0.0.1:$RGW_PORT" "$RGW_NAME" rgw_listening

step "creating the S3 user"
timeout "$(remaining)" radosgw-admin -c "$CONF" user create --uid kiln-test --display-name "Kiln tests" \
  --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" </dev/null 9>&- >>"$LOGS/radosgw-admin.out" 2>&1 ||
  die "radosgw-admin user create failed" "$LOGS/radosgw-admin.out" "$LOGS/client.admin.log"

s3_env "$RGW_PORT" >"$ENV_FILE"
step "waiting for S3 to accept signed requests"
s3_ready "$(remaining)" || die "S3 did not answer within ${TIMEOUT}s" "$LOGS/$RGW_NAME.log"

step "ready"
cat "$ENV_FILE"
