#!/usr/bin/env bash
# Leftover *.wal.lz4.tmp / *.snapshot.lz4.tmp files (a daemon killed in the
# middle of an upload) are removed from a file replica at start and by the
# retention pass; a .tmp an upload still holds (flock) or that is fresh is
# never touched.  (After 200 kill -9 six of them stayed for ever.)
source "$SRCDIR/tests/lib/common.sh"

R=$T/replica
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$R
        sync-interval: 100ms
        retention: 1h
        retention-check-interval: 1s
YML
"$SQLWRITER" -db "$T/app.db" -n 50 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 20 bash -c "ls $R/generations/*/snapshots/*.snapshot.lz4" ||
  fail "no snapshot"
sluice_stop
G=$(basename "$(ls -d "$R"/generations/*)")
W=$R/generations/$G/wal
S=$R/generations/$G/snapshots

# What killed uploads leave: old .tmp files (an hour old).
printf 'partial' >"$W/00000000_00001000.wal.lz4.tmp"
printf 'partial' >"$S/00000001.snapshot.lz4.tmp"
touch -d '1 hour ago' "$W/00000000_00001000.wal.lz4.tmp" "$S/00000001.snapshot.lz4.tmp"
# A fresh one (an upload by another process that just started) and an old
# one an upload holds with flock, as sluice's own uploads do.
printf 'fresh' >"$W/00000000_00002000.wal.lz4.tmp"
printf 'held' >"$W/00000000_00003000.wal.lz4.tmp"
touch -d '1 hour ago' "$W/00000000_00003000.wal.lz4.tmp"
python3 -c '
import fcntl, sys, time
f = open(sys.argv[1], "r+")
fcntl.flock(f, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)' "$W/00000000_00003000.wal.lz4.tmp" >"$T/lock.out" &
LOCKER=$!
PIDS+=("$LOCKER")
wait_until 10 grep -q locked "$T/lock.out" || fail "locker did not start"

: >"$T/sluice.log"
"$SQLWRITER" -db "$T/app.db" -n 20 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 20 grep -q "removed 2 temporary files left by interrupted uploads" "$T/sluice.log" ||
  fail "leftovers not removed at start"
[ ! -e "$W/00000000_00001000.wal.lz4.tmp" ] || fail "old wal .tmp kept"
[ ! -e "$S/00000001.snapshot.lz4.tmp" ] || fail "old snapshot .tmp kept"
[ -e "$W/00000000_00002000.wal.lz4.tmp" ] || fail "a fresh .tmp was removed"
[ -e "$W/00000000_00003000.wal.lz4.tmp" ] || fail "a .tmp held by an upload was removed"
echo "start: 2 leftovers removed, the fresh and the held one kept"

# The retention pass takes them once they are old and released.
touch -d '1 hour ago' "$W/00000000_00002000.wal.lz4.tmp" "$W/00000000_00003000.wal.lz4.tmp"
kill "$LOCKER"
wait "$LOCKER" 2>/dev/null
wait_until 20 bash -c "! ls $W/*.tmp" || fail "retention left: $(ls "$W"/*.tmp)"
# A sweep logs after its unlinks, and a pass between the touch and the kill
# takes the released one alone: count the files the log names (2 at start).
swept() {
  grep -o 'removed [0-9]* temporary file' "$T/sluice.log" |
    awk '{ s += $2 } END { print s + 0 }'
}
export -f swept
export T
wait_until 10 bash -c '[ "$(swept)" -ge 4 ]' ||
  fail "retention sweep not logged (files named removed: $(swept))"
echo "retention: the released ones removed"
"$SQLWRITER" -db "$T/app.db" -n 20 >/dev/null
sluice_stop
[ -z "$(find "$R" -name '*.tmp')" ] || fail "left: $(find "$R" -name '*.tmp')"

"$SLUICE" restore -o "$T/restored.db" "file://$R" 2>"$T/restore.err" ||
  { cat "$T/restore.err"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "file_tmp_cleanup: ok"
