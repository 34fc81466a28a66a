#!/usr/bin/env bash
# Heap per idle database (valgrind massif): N databases (one row each) in
# one `dir:` entry, file replica, every one in deep sleep; the heap in use
# (massif's detailed snapshot, taken through vgdb once every database is
# replicated and holds no fd) minus that of the same daemon with no
# database, divided by N.  The top allocation sites follow.
#   bench/idle_heap.sh BUILD N [DEEP_AFTER]
# Env: TMPDIR, LEASE_TTL (as bench/idle.sh).
set -euo pipefail
BUILD=${1:-build}
N=${2:-200}
DEEP=${3:-1s}
SLUICE=$(cd "$BUILD" && pwd)/sluice
T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-heapbench.XXXXXX")
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
conf() { # DIR
  cat <<YML
deep-sleep-after: $DEEP
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
replicated() {
  find "$T/replica" -path '*/wal/*' -name '*.wal.lz4' 2>/dev/null |
    sed 's,/generations/.*,,' | sort -u | wc -l
}
db_fds() { ls -l "/proc/$1/fd" 2>/dev/null | awk '{print $NF}' | grep -c '\.db' || true; }
# run CONFIG N LABEL: heap bytes in use once settled (and a detailed snapshot)
run() {
  valgrind --tool=massif --vgdb=yes --vgdb-prefix="$T/vgdb" --depth=8 --threshold=0.01 \
    --massif-out-file="$T/$3.massif" "$SLUICE" replicate -config "$1" \
    >>"$T/$3.log" 2>&1 &
  PID=$!
  local ok=0 t0=$SECONDS
  while [ "$ok" -lt 3 ]; do
    if [ "$(db_fds "$PID")" -eq 0 ] && [ "$(replicated)" -ge "$2" ] &&
      grep -q 'sluice v' "$T/$3.log" 2>/dev/null; then
      ok=$((ok + 1))
    else
      ok=0
    fi
    [ $((SECONDS - t0)) -lt 900 ] || { echo "$3: not settled" >&2; exit 1; }
    sleep 1
  done
  sleep 3
  vgdb --vgdb-prefix="$T/vgdb" --pid="$PID" detailed_snapshot "$T/$3.snap" >/dev/null
  kill -TERM "$PID"
  wait "$PID" || true
  PID=
  awk -F= '/^mem_heap_B=/ {h=$2} /^mem_heap_extra_B=/ {x=$2} END {print h, x}' "$T/$3.snap"
}
read -r b_heap b_extra < <(run "$T/none.yml" 0 none)
read -r n_heap n_extra < <(run "$T/sluice.yml" "$N" dbs)
echo "N=$N deep-sleep-after=$DEEP"
echo "heap: baseline $b_heap B (+$b_extra malloc overhead), $N dbs $n_heap B (+$n_extra)"
# The pool threads' copy buffers (shadow.c copy_buf, one per thread, made
# by the first copy) are a fixed cost the baseline never allocates.
cb=$(ms_print --threshold=0 "$T/dbs.snap" | grep -m1 'copy_buf (shadow.c' | sed 's/.*(\([0-9,]*\)B).*/\1/' | tr -d , || true)
cb=${cb:-0}
echo "pool threads' copy buffers: $cb B (fixed, not counted)"
echo "per database: $(((n_heap - b_heap - cb) / N)) B requested, $(((n_heap + n_extra - b_heap - b_extra - cb) / N)) B with malloc overhead"
if [ -n "${KEEP:-}" ]; then cp "$T/dbs.snap" "$KEEP"; fi
# Allocation sites, two frames deep (bytes per database = bytes / N).
ms_print --threshold=0.2 "$T/dbs.snap" 2>/dev/null | grep -E '^ *(\| )*->' | grep -E '^ ?(\| ){0,2}->' | head -80 || true
