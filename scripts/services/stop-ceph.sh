#!/usr/bin/env bash
# Stops the daemons start-ceph.sh started in <state-dir>.
# Succeeds when nothing runs. Memstore data does not survive a stop.
set -euo pipefail

[[ $# -eq 1 && -n $1 ]] || { echo "usage: $0 <state-dir>" >&2; exit 2; }
[[ -d $1 ]] || { echo "stop-ceph: $1 does not exist, nothing to stop" >&2; exit 0; }
STATE=$(cd "$1" && pwd -P)
CONF=$STATE/ceph.conf
RUN=$STATE/run

if [[ -z ${KILN_CEPH_LOCK_HELD:-} ]]; then
  exec 9>"$STATE/.lock"
  flock -w 120 9 || { echo "stop-ceph: another start/stop holds $STATE/.lock" >&2; exit 1; }
fi

# Ours are the processes with our config file as an argument (`-c <conf>`):
# daemons, including one still starting that wrote no pid file yet, and any
# ceph/radosgw-admin client talking to this cluster. Matching the whole
# argument, not a substring, never catches another state dir's cluster.
our_pids() {
  local dir pid arg
  local -a args
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [[ $pid == "$$" ]] && continue
    mapfile -d '' -t args <"$dir/cmdline" 2>/dev/null || continue
    for arg in "${args[@]}"; do
      if [[ $arg == "$CONF" ]]; then
        echo "$pid"
        break
      fi
    done
  done
}

# A zombie counts as gone: it may never be reaped where pid 1 is not an init.
running() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# The data is throwaway (memstore, wiped by the next start), so a graceful
# stop buys nothing and costs seconds: the OSD serialises its RAM to disk
# and waits for the mon's ack, radosgw hangs if the OSD is already gone.
# SIGKILL is immediate and cannot be ignored.
mapfile -t pids < <(our_pids)
for pid in "${pids[@]}"; do
  echo "stop-ceph: killing $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) (pid $pid)" >&2
  kill -KILL "$pid" 2>/dev/null || true
done
rm -f "$RUN"/*.pid

# Waits until the ports are released, so an immediate restart can reuse them.
for _ in $(seq 1 50); do
  alive=0
  for pid in "${pids[@]}"; do running "$pid" && alive=1; done
  ((alive)) || exit 0
  sleep 0.1
done
echo "stop-ceph: some daemons are still running: ${pids[*]}" >&2
exit 1
