#!/usr/bin/env bash
# A large replica built here (snapshot past the 16 MiB ranged-GET threshold,
# WAL segments past 4 MiB, several indexes): restore is exact, keeps memory
# bounded, and its time is reported next to `lz4 -d` + `cp` of the same
# data.  SIZE_MB (default 64) sets the database size.
. "$(dirname "$0")/../lib/common.sh"

[ -x "$SLUICE" ] || skip "no sluice binary at $SLUICE"
command -v python3 >/dev/null || skip "no python3"
command -v lz4 >/dev/null || skip "no lz4"
SIZE_MB=${SIZE_MB:-64}
GEN=00000000000000cc
R=$T/replica/generations/$GEN
mkdir -p "$R/snapshots" "$R/wal"

# The source: rows of random hex (compresses about 2:1), WAL mode, no
# automatic checkpoints, so the -wal of each step can be cut into segments.
python3 - "$T/src.db" "$SIZE_MB" "$T/seg" <<'PY'
import os, sqlite3, sys
path, size_mb, seg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
rows = size_mb * 1024 * 1024 // 1100
db.execute("BEGIN")
for i in range(rows):
    db.execute("INSERT INTO t(k, v) VALUES (?, ?)", (i, os.urandom(512).hex()))
db.execute("COMMIT")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
os.system(f"cp {path} {seg}.snapshot")
wal = path + "-wal"
def grab():
    with open(wal, "rb") as f:
        return f.read()
# Index 0: a big transaction (> 4 MiB of WAL) then a small one.
db.execute("BEGIN")
for i in range(6000):
    db.execute("INSERT INTO t(k, v) VALUES (?, ?)", (-i, os.urandom(512).hex()))
db.execute("COMMIT")
a = grab()
db.execute("UPDATE t SET v = 'x' WHERE id % 1000 = 0")
b = grab()
open(f"{seg}.0.0", "wb").write(a)
open(f"{seg}.0.{len(a)}", "wb").write(b[len(a):])
# Index 1 after a WAL restart.
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.execute("DELETE FROM t WHERE id % 997 = 0")
open(f"{seg}.1.0", "wb").write(grab())
db.close()
PY
[ $? -eq 0 ] || fail "cannot build the source database"

lz4 -q -f "$T/seg.snapshot" "$R/snapshots/00000000.snapshot.lz4"
for f in "$T"/seg.[01].*; do
  i=${f#"$T"/seg.}; off=${i#*.}; i=${i%%.*}
  lz4 -q -f "$f" "$R/wal/$(printf '%08x_%08x' "$i" "$off").wal.lz4"
done
snap=$(stat -c %s "$R/snapshots/00000000.snapshot.lz4")
[ "$snap" -gt $((16 << 20)) ] || fail "snapshot only $snap bytes: not a ranged restore"

# sluice restore, timed, with its peak anonymous memory (sampled; the
# integrity check maps the database, which is page cache, not ours).
sync
start=$(date +%s%N)
SLUICE_PROGRESS_INTERVAL_MS=20 "$SLUICE" restore -o "$T/out/db" "file://$T/replica" 2>"$T/restore.log" &
pid=$!
kb=0
while kill -0 $pid 2>/dev/null; do
  a=$(awk '/^RssAnon/ { print $2 }' /proc/$pid/status 2>/dev/null)
  [ -n "$a" ] && [ "$a" -gt "$kb" ] && kb=$a
  sleep 0.01
done
wait $pid || { cat "$T/restore.log" >&2; fail "restore failed"; }
ms=$(( ($(date +%s%N) - start) / 1000000 ))
assert_same_db "$T/src.db" "$T/out/db"
[ "$kb" -lt 150000 ] || fail "restore used $kb KB of anonymous memory"

# Progress: lines while it runs (every 20 ms here, 5 s by default) with
# objects and bytes done out of the totals, never going back; then the
# summary line with the objects, bytes and the check's own time.
nobj=$(find "$T/replica" -name '*.lz4' | wc -l)
total=$(find "$T/replica" -name '*.lz4' -printf '%s\n' | awk '{s+=$1} END {printf "%.1fMB", s/1e6}')
grep -q "restore progress generation=$GEN objects=[0-9]*/$nobj bytes=[0-9.]*MB/$total (" "$T/restore.log" ||
  { cat "$T/restore.log"; fail "no progress line with objects/$nobj and bytes/$total"; }
grep -o 'restore progress.* bytes=[0-9.]*' "$T/restore.log" | sed 's/.*bytes=//' |
  awk 'NR > 1 && $1 < last { exit 1 } { last = $1 }' || fail "progress went back"
pages=$(sqlite3 "$T/src.db" 'PRAGMA page_count')
summary=$(grep -o 'restore complete .*' "$T/restore.log") || fail "no summary line"
echo "$summary" | grep -q "objects=$nobj bytes=$total rate=[0-9.]*MB/s pages_written=[0-9]* check=integrity_check check_elapsed=" ||
  fail "summary: $summary"
written=$(echo "$summary" | sed 's/.*pages_written=\([0-9]*\).*/\1/')
[ "$written" -ge "$pages" ] || fail "pages_written $written < $pages pages"

# The floor: decompress the snapshot and copy it (no WAL, no checks).
start=$(date +%s%N)
lz4 -d -q -f "$R/snapshots/00000000.snapshot.lz4" "$T/floor.db"
cp "$T/floor.db" "$T/floor2.db"
floor=$(( ($(date +%s%N) - start) / 1000000 ))
echo "restore_large: ${SIZE_MB} MB database, snapshot $((snap >> 20)) MiB compressed:" \
  "sluice restore ${ms}ms (peak anonymous memory ${kb} KB); lz4 -d + cp ${floor}ms"
