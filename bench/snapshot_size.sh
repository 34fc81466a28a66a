#!/usr/bin/env bash
# Rows 1-2 of issue 12: the snapshot object of a ~197 MB database of text
# rows against `lz4 -1` of the same file, and `sluice restore` of that
# snapshot (file replica; decode, write, fsync, integrity check) against
# `lz4 -d` of it, in the same run.
# Usage: bench/snapshot_size.sh [MB]   (SLUICE=... to measure another build)
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
SLUICE=${SLUICE_BIN:-$SLUICE}
MB=${1:-197}
ms() { echo $(( ($2 - $1) / 1000000 )); }
python3 "$SRCDIR/bench/tools/textdb.py" "$T/app.db" "$MB"
size=$(stat -c %s "$T/app.db")
sync
lz4 -1 -q -f "$T/app.db" "$T/app.db.lz4"
lz4size=$(stat -c %s "$T/app.db.lz4")
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
YML
sluice_start -config "$T/sluice.yml"
have_snap() { ls "$T"/replica/generations/*/snapshots/*.snapshot.lz4 >/dev/null 2>&1; }
wait_until 120 have_snap || fail "no snapshot"
sluice_stop
snap=$(ls "$T"/replica/generations/*/snapshots/*.snapshot.lz4 | head -1)
snapsize=$(stat -c %s "$snap")
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(date +%s%N); lz4 -d -q -f "$snap" "$T/plain.db"; sync "$T/plain.db"; t1=$(date +%s%N)
t_lz4=$(ms "$t0" "$t1")
sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
t0=$(date +%s%N)
"$SLUICE" restore ${RESTORE_ARGS:-} -o "$T/restored.db" "file://$T/replica" >"$T/restore.log" 2>&1 || fail "restore"
t1=$(date +%s%N)
t_restore=$(ms "$t0" "$t1")
check=$(grep -o 'integrity_check ok.*elapsed=[^ ]*\|quick_check ok.*elapsed=[^ ]*' "$T/restore.log" | sed 's/.*elapsed=//')
[ "$(sqlite3 "$T/restored.db" 'SELECT count(*), sum(n) FROM t')" = \
  "$(sqlite3 "$T/app.db" 'SELECT count(*), sum(n) FROM t')" ] || fail "restored rows differ"
echo "db_bytes=$size snapshot_bytes=$snapsize lz4_1_bytes=$lz4size" \
  "snapshot/lz4-1=$(awk -v a="$snapsize" -v b="$lz4size" 'BEGIN{printf "%.3f", a/b}')" \
  "restore_ms=$t_restore lz4_d_ms=$t_lz4" \
  "restore/lz4-d=$(awk -v a="$t_restore" -v b="$t_lz4" 'BEGIN{printf "%.2f", a/b}')" \
  "integrity_check=${check:-n/a}"
