#!/usr/bin/env bash
# Active: N databases in one process (file replicas, sync-interval 10ms), of
# which W write (a commit every PERIOD s each, staggered): commit -> replica
# lag p50/p90/p99/max for the writers (bench/tools/active_lag.py: an
# inotify watch on each writer's replica wal/ directory sees the segment
# object appear; its LZ4 frame gives its end offset, compared with the
# WAL's size after each commit), and the daemon's CPU while they write,
# against the same daemon with no database, measured in the same run.
#   bench/active.sh BUILD N [W] [PERIOD] [SECONDS] [EXTRA_YAML]
# EXTRA_YAML: top-level lines added to the config (e.g.
# "max-requests-per-second: 500").  Leases are off (lease-ttl: 0): with
# them every idle replica renews lock.json every 10 s (issue 9's open
# conflict), which is a different figure.
set -euo pipefail
BUILD=${1:-build}
N=${2:-1000}
W=${3:-100}
PERIOD=${4:-0.1}
SECS=${5:-60}
EXTRA=${6:-}
HERE=$(cd "$(dirname "$0")" && pwd)
SLUICE=$(cd "$BUILD" && pwd)/sluice
T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-activebench.XXXXXX")
PID=
trap 'if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; fi; rm -rf "$T"' EXIT
mkdir -p "$T/dbs" "$T/none"

t0=$(date +%s)
# (Each made by SQLite: copies of one file did not go to sleep here, not
# diagnosed.)
python3 - "$T/dbs" "$N" <<'PY'
import sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    c = sqlite3.connect(f"{d}/t{i:06d}.db", isolation_level=None)
    c.execute("PRAGMA journal_mode=wal")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    c.execute("INSERT INTO t(v) VALUES (?)", (f"tenant {i}",))
    c.close()
PY
echo "created $N databases in $(($(date +%s) - t0)) s"

conf() { # DIR
  cat <<YML
$EXTRA
dbs:
  - dir: $1
    pattern: "*.db"
    checkpoint-interval: 1h
    min-checkpoint-page-count: 1000000
    max-checkpoint-page-count: 2000000
    replica:
      url: file://$T/replica
      sync-interval: 10ms
      lease-ttl: 0
YML
}
conf "$T/dbs" >"$T/sluice.yml"
conf "$T/none" >"$T/none.yml"

cat >"$T/listen.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
while True:
    m = s.recv(4096).decode()
    if "READY=1" in m:
        print(time.time_ns(), flush=True)
        break
PY
field() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
nfds() { ls "/proc/$1/fd" 2>/dev/null | wc -l || true; }
# Databases with more than one fd on their file (an open SQLite connection;
# a light sleeper keeps one fd on its database file, a deep sleeper none).
awake_dbs() {
  ls -l "/proc/$1/fd" 2>/dev/null | awk '{print $NF}' | grep '\.db$' |
    sort | uniq -d | wc -l || true
}
snapshots() { find "$T/replica" -name '*.snapshot.lz4' 2>/dev/null | wc -l; }

start() { # CONFIG N
  rm -f "$T/notify.sock" "$T/ready"
  python3 "$T/listen.py" "$T/notify.sock" >"$T/ready" &
  local lp=$!
  while [ ! -S "$T/notify.sock" ]; do sleep 0.01; done
  START_NS=$(date +%s%N)
  NOTIFY_SOCKET=$T/notify.sock "$SLUICE" replicate -config "$1" >>"$T/sluice.log" 2>&1 &
  PID=$!
  wait "$lp"
  READY_NS=$(date +%s%N)
  # Every database has its snapshot, and all sleep (no connection open).
  while [ "$(snapshots)" -lt "$2" ]; do sleep 0.5; done
  local ok=0
  while [ "$ok" -lt 3 ]; do
    if [ "$(awake_dbs "$PID")" -eq 0 ]; then ok=$((ok + 1)); else ok=0; fi
    sleep 0.2
  done
  SETTLED_NS=$(date +%s%N)
}
stop() {
  kill -TERM "$PID"
  wait "$PID" || true
  PID=
}
cpu_s() { echo "scale=2; ($2 - $1) / $(getconf CLK_TCK)" | bc; }

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB, load $(cut -d' ' -f1-3 /proc/loadavg), nofile $(ulimit -Sn)/$(ulimit -Hn), $(uname -r)"
echo "N=$N writers=$W period=${PERIOD}s seconds=$SECS ${EXTRA:+extra: $EXTRA}"

start "$T/none.yml" 0
c0=$(cpu_ticks "$PID")
sleep "$SECS"
c1=$(cpu_ticks "$PID")
echo "baseline (no database): rss_kb=$(field "$PID" VmRSS) fds=$(nfds "$PID") threads=$(field "$PID" Threads) cpu_s_per_${SECS}s=$(cpu_s "$c0" "$c1")"
stop

start "$T/sluice.yml" "$N"
echo "start: READY=1 after $(((READY_NS - START_NS) / 1000000)) ms, every snapshot written and all asleep after $(((SETTLED_NS - START_NS) / 1000000)) ms"
echo "before writing: rss_kb=$(field "$PID" VmRSS) fds=$(nfds "$PID") threads=$(field "$PID" Threads)"
NAMES=$(cd "$T/dbs" && ls | awk -v w="$W" '/\.db$/ && n++ < w') # (not head: ls would die of SIGPIPE, and pipefail)
c0=$(cpu_ticks "$PID")
w0=$(date +%s%N)
# shellcheck disable=SC2086
python3 "$HERE/tools/active_lag.py" "$T/dbs" "$T/replica" "$W" "$PERIOD" "$SECS" $NAMES >"$T/lag.out"
w1=$(date +%s%N)
c1=$(cpu_ticks "$PID")
echo "writing: $(cat "$T/lag.out" | tr '\n' ' ')"
echo "while writing: rss_kb=$(field "$PID" VmRSS) fds=$(nfds "$PID") threads=$(field "$PID" Threads) daemon cpu_s=$(cpu_s "$c0" "$c1") over $(((w1 - w0) / 1000000)) ms (the writers' run plus up to 5 s of drain)"
stop
errs=$(grep -c 'level=ERROR' "$T/sluice.log" || true)
echo "errors in the log: $errs"
