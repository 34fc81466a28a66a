#!/usr/bin/env bash
# Rows 3-4 of issue 12: a 16 MB database updated in place (random 50-row
# updates, as fast as they go) for 20 s with one file replica and default
# settings (RETENTION to override the 24h retention, WAL_FACTOR the
# snapshot-wal-factor, RATE to pace the writer at that many updates a
# second, RESTORE_ARGS for the first restore); then the replica's
# size and object count (all that retention keeps, and the part a
# latest-state restore reads), and a restore of the latest state against
# `lz4 -d` of an LZ4 copy of the final database, in the same run.
# Usage: bench/wal_heavy.sh [SECONDS]   (SLUICE_BIN=... for another build)
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
SLUICE=${SLUICE_BIN:-$SLUICE}
SECS=${1:-20}
ms() { echo $(( ($2 - $1) / 1000000 )); }
python3 - "$T/app.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
c.executemany("INSERT INTO t(v) VALUES (hex(randomblob(200)))", [()] * 36000)
c.commit()
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
PY
{
  echo "dbs:"
  echo "  - path: $T/app.db"
  echo "    replicas:"
  echo "      - url: file://$T/replica"
  [ -n "${WAL_FACTOR:-}" ] && echo "        snapshot-wal-factor: $WAL_FACTOR"
  [ -n "${RETENTION:-}" ] && echo "        retention: $RETENTION" &&
    echo "        retention-check-interval: 1s"
} >"$T/sluice.yml"
sluice_start -config "$T/sluice.yml"
have_snap() { ls "$T"/replica/generations/*/snapshots/*.snapshot.lz4 >/dev/null 2>&1; }
wait_until 60 have_snap || fail "no snapshot"
python3 - "$T/app.db" "$SECS" "${RATE:-0}" <<'PY'
import random, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA busy_timeout=5000")
t0 = time.time(); end = t0 + float(sys.argv[2]); n = 0
rate = float(sys.argv[3])
while time.time() < end:
    lo = random.randrange(36000 - 50)
    c.execute("UPDATE t SET v = hex(randomblob(200)) WHERE id BETWEEN ? AND ?", (lo, lo + 49))
    n += 1
    if rate > 0 and t0 + n / rate > time.time():
        time.sleep(t0 + n / rate - time.time())
print("updates=%d" % n, end=" ")
PY
sluice_stop
dbsize=$(stat -c %s "$T/app.db")
repsize=$(du -sb "$T/replica" | cut -f1)
nobj=$(find "$T/replica" -name '*.lz4' | wc -l)
nsnap=$(find "$T/replica" -name '*.snapshot.lz4' | wc -l)
sqlite3 "$T/app.db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
lz4 -1 -q -f "$T/app.db" "$T/final.lz4"
sync
t0=$(date +%s%N); lz4 -d -q -f "$T/final.lz4" "$T/plain.db"; sync "$T/plain.db"; t1=$(date +%s%N)
t_lz4=$(ms "$t0" "$t1")
t0=$(date +%s%N)
# shellcheck disable=SC2086 # (words)
"$SLUICE" restore ${RESTORE_ARGS:-} -o "$T/restored.db" "file://$T/replica" >"$T/restore.log" 2>&1 || fail "restore"
t1=$(date +%s%N)
t_restore=$(ms "$t0" "$t1")
# The same restore again: the first one's memory is new to the process and
# often to the machine (a VM's first touch of a page is zeroed by the
# kernel, slowly: bench/RESULTS.md); the second is the restore's own work.
t0=$(date +%s%N)
"$SLUICE" restore -o "$T/restored2.db" "file://$T/replica" >/dev/null 2>&1 || fail "second restore"
t1=$(date +%s%N)
t_restore2=$(ms "$t0" "$t1")
cmp -s "$T/restored.db" "$T/restored2.db" || fail "the two restores differ"
[ "$(sqlite3 "$T/restored.db" 'SELECT count(*), sum(length(v)), max(v) FROM t')" = \
  "$(sqlite3 "$T/app.db" 'SELECT count(*), sum(length(v)), max(v) FROM t')" ] || fail "restored rows differ"
# What a latest-state restore reads (the newest snapshot and the segments
# after it), beside what retention keeps (every object of the window).
read_bytes=$(grep -o 'restore complete.* bytes=[0-9.]*MB' "$T/restore.log" | sed 's/.*bytes=//; s/MB//')
read_objs=$(grep -o 'restore complete.* objects=[0-9]*' "$T/restore.log" | sed 's/.*objects=//')
check=$(grep -o 'check_elapsed=[^ ]*' "$T/restore.log" | cut -d= -f2 | tr -d '"')
echo "load=$(cut -d' ' -f1 /proc/loadavg) db_bytes=$dbsize kept_bytes=$repsize objects=$nobj snapshots=$nsnap" \
  "kept/db=$(awk -v a="$repsize" -v b="$dbsize" 'BEGIN{printf "%.1f", a/b}')" \
  "latest_read_MB=$read_bytes latest_read_objects=$read_objs" \
  "latest_read/db=$(awk -v a="$read_bytes" -v b="$dbsize" 'BEGIN{printf "%.1f", a*1e6/b}')" \
  "check=$check" \
  "restore_ms=$t_restore lz4_d_ms=$t_lz4" \
  "restore/lz4-d=$(awk -v a="$t_restore" -v b="$t_lz4" 'BEGIN{printf "%.1f", a/(b ? b : 1)}')" \
  "restore2_ms=$t_restore2 restore2/lz4-d=$(awk -v a="$t_restore2" -v b="$t_lz4" 'BEGIN{printf "%.1f", a/(b ? b : 1)}')"
