#!/usr/bin/env bash
# Idle databases in one process (file replicas): memory, fds and threads per
# database against the same daemon with no database (measured in the same
# run), CPU over IDLE idle seconds, start-up time (first start, which takes
# a snapshot of each, and restart of databases already replicated: time to
# READY=1 and until every database sleeps), and restores of a sample.
#   bench/idle.sh BUILD N [IDLE_SECONDS] [DEEP_AFTER] [SAMPLE]
# DEEP_AFTER is deep-sleep-after (default 10m: the databases stay in light
# sleep, 2 fds each, if the fd limit allows; 1s: deep sleep, 0 fds).
# SAMPLE=1 restores every database (`restore -o OUTDIR DIR`).  Env:
# TMPDIR (a tmpfs for 100,000 files), LEASE_TTL (lease-ttl of the replica;
# 0 turns the single-writer lease and its renewals off), SHUTDOWN_TIMEOUT
# (default 30s: a stop that times out leaves databases without their
# clean-stop record, and those get a full start at the restart).
set -euo pipefail
BUILD=${1:-build}
N=${2:-1000}
IDLE=${3:-60}
DEEP=${4:-10m}
SAMPLE=${5:-50}
SLUICE=$(cd "$BUILD" && pwd)/sluice
T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-idlebench.XXXXXX")
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; rm -rf "$T"' EXIT
mkdir -p "$T/dbs" "$T/none"

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

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
conf() { # DIR
  cat <<YML
addr: 127.0.0.1:$PORT
deep-sleep-after: $DEEP
shutdown-timeout: ${SHUTDOWN_TIMEOUT:-30s}
dbs:
  - dir: $1
    pattern: "*.db"
    replica:
      url: file://$T/replica${LEASE_TTL:+
      lease-ttl: $LEASE_TTL}
YML
}
conf "$T/dbs" >"$T/sluice.yml"
conf "$T/none" >"$T/none.yml"

# READY=1 listener: prints the time (ns) it arrived.
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
# Databases with more than one fd on their file (an open SQLite connection):
# 0 once every database sleeps (a light sleeper keeps one fd on its database
# file, one on its -wal and one on its -shm; a deep sleeper none).
awake_dbs() {
  ls -l "/proc/$1/fd" 2>/dev/null | awk '{print $NF}' | grep '\.db$' |
    sort | uniq -d | wc -l || true
}

# Databases with a WAL segment in the replica.
replicated() {
  find "$T/replica" -path '*/wal/*' -name '*.wal.lz4' 2>/dev/null |
    sed 's,/generations/.*,,' | sort -u | wc -l
}

# start CONFIG N: runs the daemon (N databases), sets PID, START_NS, READY_NS, SETTLED_NS.
start() {
  rm -f "$T/notify.sock" "$T/ready"
  python3 "$T/listen.py" "$T/notify.sock" >"$T/ready" &
  local lp=$!
  while [ ! -S "$T/notify.sock" ]; do sleep 0.01; done
  START_NS=$(date +%s%N)
  NOTIFY_SOCKET=$T/notify.sock "$SLUICE" replicate -config "$1" >>"$T/sluice.log" 2>&1 &
  PID=$!
  wait "$lp"
  READY_NS=$(cat "$T/ready")
  # Settled: every database has a WAL segment in the replica (with no
  # database, trivially) and none has a connection open (all asleep), three
  # checks in a row.
  local ok=0 want=$2
  while [ "$ok" -lt 3 ]; do
    if [ "$(awake_dbs "$PID")" -eq 0 ] && [ "$(replicated)" -ge "$want" ]; then
      ok=$((ok + 1))
    else
      ok=0
    fi
    sleep 0.5
  done
  SETTLED_NS=$(date +%s%N)
}
stop() { # LABEL: the time a clean stop takes and its exit code
  local t0 rc=0
  t0=$(date +%s%N)
  kill -TERM "$PID"
  wait "$PID" || rc=$?
  echo "$1 stop: $((($(date +%s%N) - t0) / 1000000)) ms, exit $rc"
  PID=
}
measure() { # LABEL
  local t0 t1
  t0=$(cpu_ticks "$PID")
  sleep "$IDLE"
  t1=$(cpu_ticks "$PID")
  printf '%s rss_kb=%s fds=%s threads=%s cpu_s_per_%ss=%s dormant=%s\n' "$1" \
    "$(field "$PID" VmRSS)" "$(nfds "$PID")" "$(field "$PID" Threads)" \
    "$IDLE" "$(echo "scale=2; ($t1 - $t0) / $(getconf CLK_TCK)" | bc)" \
    "$(curl -sf "http://127.0.0.1:$PORT/metrics" | awk '$1 == "sluice_databases_dormant" { print $2 }')"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB, load $(cut -d' ' -f1-3 /proc/loadavg), nofile $(ulimit -Sn)/$(ulimit -Hn)"
echo "N=$N deep-sleep-after=$DEEP idle=${IDLE}s"

start "$T/none.yml" 0
base=$(measure baseline)
echo "$base"
stop "baseline"

start "$T/sluice.yml" "$N"
echo "first start: READY=1 after $(((READY_NS - START_NS) / 1000000)) ms, all replicated and asleep after $(((SETTLED_NS - START_NS) / 1000000)) ms"
stop "first start"

start "$T/sluice.yml" "$N"
echo "restart: READY=1 after $(((READY_NS - START_NS) / 1000000)) ms, all replicated and asleep after $(((SETTLED_NS - START_NS) / 1000000)) ms"
res=$(measure "$N dbs")
echo "$res"
stop "restart"

b_rss=$(echo "$base" | sed 's/.*rss_kb=\([0-9]*\).*/\1/')
b_fds=$(echo "$base" | sed 's/.*fds=\([0-9]*\).*/\1/')
r_rss=$(echo "$res" | sed 's/.*rss_kb=\([0-9]*\).*/\1/')
r_fds=$(echo "$res" | sed 's/.*fds=\([0-9]*\).*/\1/')
echo "per database: $(echo "scale=2; ($r_rss - $b_rss) * 1024 / $N" | bc) bytes, $(echo "scale=3; ($r_fds - $b_fds) / $N" | bc) fds"

# Restores: every SAMPLE-th database, each with `restore -o FILE DB`; with
# SAMPLE=1 all of them at once (`restore -o OUTDIR DIR`, in parallel).  Each
# is checked by one Python process: integrity_check and the same rows.
out=$T/restored
rm -rf "$out"
mkdir -p "$out"
if [ "$SAMPLE" -eq 1 ]; then
  r0=$(date +%s%N)
  "$SLUICE" restore -config "$T/sluice.yml" -o "$out" "$T/dbs" >"$T/restore.log" 2>&1 || true
  echo "restore -o OUTDIR DIR: $(tail -1 "$T/restore.log") in $((($(date +%s%N) - r0) / 1000000)) ms"
  ls "$T/dbs" | grep '\.db$' >"$T/sample"
else
  ls "$T/dbs" | grep '\.db$' | awk -v s="$SAMPLE" 'NR % s == 1' >"$T/sample"
  while read -r f; do
    "$SLUICE" restore -config "$T/sluice.yml" -o "$out/$f" "$T/dbs/$f" >/dev/null 2>&1 || true
  done <"$T/sample"
fi
python3 - "$T/dbs" "$out" "$T/sample" <<'PY'
import os, sqlite3, sys
src, out, sample = sys.argv[1:4]
names = open(sample).read().split()
bad = 0
for f in names:
    try:
        r = sqlite3.connect(f"file:{out}/{f}?mode=ro", uri=True)
        ok = r.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = r.execute("SELECT id, v FROM t ORDER BY id").fetchall()
        r.close()
        s = sqlite3.connect(f"file:{src}/{f}?mode=ro", uri=True)
        want = s.execute("SELECT id, v FROM t ORDER BY id").fetchall()
        s.close()
        if not ok or rows != want or not rows:
            bad += 1
    except Exception:
        bad += 1
print(f"restored and compared {len(names)} of the databases: {bad} failed")
PY
echo "errors in the log: $(grep -c 'level=ERROR' "$T/sluice.log" || true)"
