#!/usr/bin/env bash
# A full replica filesystem (issue 11): a file replica on a 16 MB tmpfs,
# filled by a filler file while the application commits.  One clear error
# line naming the object, retries (upload errors counted), no new
# generation; once space is free the replica catches up and a graceful stop
# loses nothing; no temporary file is left in the replica.
source "$SRCDIR/tests/lib/common.sh"
command -v python3 >/dev/null || skip "python3 not installed"

RFS=$T/rfs
mkdir -p "$RFS"
mount -t tmpfs -o size=16m tmpfs "$RFS" 2>/dev/null ||
  skip "cannot mount a tmpfs (needs root / CAP_SYS_ADMIN)"
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; umount -l "$RFS"; cleanup' EXIT

DB=$T/app.db
REPLICA=$RFS/replica
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $DB
    replicas:
      - url: file://$REPLICA
        sync-interval: 200ms
YML

# The application: one row every 10 ms until $T/stop exists; $T/last holds
# the id of the last committed row.
cat >"$T/writer.py" <<'PY'
import os, sqlite3, sys, time
db, t = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, isolation_level=None, timeout=10)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT)")
i = c.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0]
while not os.path.exists(t + "/stop"):
    c.execute("INSERT INTO t VALUES(?, ?)", (i + 1, "row %d %s" % (i + 1, "x" * 200)))
    i += 1
    with open(t + "/last.tmp", "w") as f:
        f.write("%d\n" % i)
    os.rename(t + "/last.tmp", t + "/last")
    time.sleep(0.01)
PY
last() { cat "$T/last" 2>/dev/null || echo 0; }
last_ge() { [ "$(last)" -ge "$1" ]; }
restore_now() {
  rm -f "$T/$1.db"
  "$SLUICE" restore -o "$T/$1.db" "file://$REPLICA" >"$T/restore.log" 2>&1 ||
    { cat "$T/restore.log" >&2; fail "restore $1 failed"; }
  local ic n mx
  ic=$(sqlite3 "$T/$1.db" 'PRAGMA integrity_check')
  [ "$ic" = ok ] || fail "integrity_check of restore $1: $ic"
  n=$(sqlite3 "$T/$1.db" 'SELECT count(*) FROM t')
  mx=$(sqlite3 "$T/$1.db" 'SELECT coalesce(max(id), 0) FROM t')
  [ "$n" = "$mx" ] || fail "restore $1: $n rows but max id $mx (not a prefix)"
  echo "$mx"
}
restored_at_least() { [ "$(restore_now "$1")" -ge "$2" ]; }
errors() { grep -c 'replica sync error' "$T/sluice.log"; }

python3 "$T/writer.py" "$DB" "$T" >"$T/writer.out" 2>&1 &
W=$!
PIDS+=("$W")
wait_until 20 last_ge 20 || fail "the application does not commit"
sluice_start -config "$T/sluice.yml"
wait_until 20 restored_at_least before 20 || fail "replica not current before the fill"

dd if=/dev/zero of="$RFS/filler" bs=1M 2>/dev/null
dd if=/dev/zero of="$RFS/filler2" bs=4k 2>/dev/null
df -k "$RFS" | tail -1 >&2
has_error() { [ "$(errors)" -ge 1 ]; }
wait_until 30 has_error || fail "no error line while the replica's filesystem is full"
grep 'replica sync error' "$T/sluice.log" | head -1 | sed 's/.*msg=//'
grep 'replica sync error' "$T/sluice.log" | head -1 | grep -q 'No space left on device' ||
  fail "the error does not say the replica's disk is full"
grep 'replica sync error' "$T/sluice.log" | head -1 | grep -q "$REPLICA" ||
  fail "the error does not name the replica file"
at_fill=$(last)
# It keeps retrying (with backoff) for as long as the disk stays full.
sleep 6
wait_until 20 last_ge $((at_fill + 100)) || fail "the application stopped"
[ "$(errors)" -eq 1 ] || fail "$(errors) error lines during the fill, want 1"
grep -q 'replica sync recovered' "$T/sluice.log" && fail "recovered while full"

rm -f "$RFS/filler" "$RFS/filler2"
wait_until 60 grep -q 'replica sync recovered' "$T/sluice.log" ||
  fail "no recovery line after the space was freed"
want=$(last)
wait_until 30 restored_at_least after "$want" || fail "the replica did not catch up"

: >"$T/stop"
wait "$W" || fail "writer"
sluice_stop
restore_now final >/dev/null
assert_same_db "$DB" "$T/final.db"
tmps=$(find "$REPLICA" -name '*.tmp' | wc -l)
gens=$(ls "$REPLICA/generations" | wc -l)
echo "$(errors) error line(s), $(grep -c 'replica sync recovered' "$T/sluice.log") recovery, $gens generation(s), $(rows "$T/final.db") rows, $tmps tmp files"
[ "$(errors)" -eq 1 ] || fail "$(errors) error lines, want 1"
[ "$gens" -eq 1 ] || fail "$gens generations, want 1"
[ "$tmps" -eq 0 ] || fail "$tmps temporary files left in the replica"
echo PASS
