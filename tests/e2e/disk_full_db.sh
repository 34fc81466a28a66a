#!/usr/bin/env bash
# The database's own filesystem full (issue 11, defect 2): a 32 MB tmpfs
# holds the database, its WAL and sluice's meta directory; a filler file
# takes every free byte while the application keeps committing (into the
# room its WAL and database already have).  The shadow WAL cannot grow, so
# sluice uploads the frames from the WAL itself: a restore during the fill
# shows the recent commits.  One error line when the disk fills, one line
# when it recovers, the sluice_disk_full metric in between; once space is
# free again everything converges (checkpoints, new WAL indexes), and a
# graceful stop loses nothing.
#
#   disk_full_db.sh [mid|restart]
# mid: the disk fills in the middle of a WAL lifetime.  restart: the
# application pauses, sluice checkpoints, the disk fills, then the
# application's next commit restarts the WAL: the new index cannot even get
# its shadow file, and is uploaded from the WAL from its header on.
source "$SRCDIR/tests/lib/common.sh"
CASE=${1:-mid}
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"

FS=$T/fs
mkdir -p "$FS"
mount -t tmpfs -o size=32m tmpfs "$FS" 2>/dev/null ||
  skip "cannot mount a tmpfs (needs root / CAP_SYS_ADMIN)"
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done; umount -l "$FS"; cleanup' EXIT

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
DB=$FS/app.db
REPLICA=$T/replica
cat >"$T/sluice.yml" <<YML
addr: 127.0.0.1:$PORT
logging:
  level: $([ "$CASE" = restart ] && echo debug || echo info)
dbs:
  - path: $DB
    checkpoint-interval: 200ms
    replicas:
      - url: file://$REPLICA
        sync-interval: 200ms
YML

# The application: pads the database (then frees the pages, so later rows
# fit in without growing the file), then commits one row every 20 ms until
# $T/stop exists, retrying a commit the full disk refuses.  $T/last holds
# the id of the last committed row.
cat >"$T/writer.py" <<'PY'
import os, sqlite3, sys, time
db, t = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, isolation_level=None, timeout=10)
c.execute("PRAGMA journal_mode=wal")
if sys.argv[3] == "pad":
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    c.execute("CREATE TABLE pad(b BLOB)")
    c.execute("BEGIN")
    for _ in range(1500):
        c.execute("INSERT INTO pad VALUES(randomblob(3900))")
    c.execute("COMMIT")
    sys.exit(0)
if sys.argv[3] == "unpad" or sys.argv[4:] == ["unpad"]:
    c.execute("DELETE FROM pad")
if sys.argv[3] == "unpad":
    sys.exit(0)
i = c.execute("SELECT coalesce(max(id), 0) FROM t").fetchone()[0]
fails = 0
while not os.path.exists(t + "/stop"):
    if os.path.exists(t + "/pause"):
        time.sleep(0.01)
        continue
    try:
        c.execute("INSERT INTO t VALUES(?, ?)", (i + 1, "row %d" % (i + 1)))
        i += 1
        with open(t + "/last.tmp", "w") as f:
            f.write("%d\n" % i)
        os.rename(t + "/last.tmp", t + "/last")
    except sqlite3.OperationalError as e:
        fails += 1
    time.sleep(0.02)
print("committed %d rows, %d commits refused" % (i, fails))
PY

# restore_now NAME: restores the replica into $T/NAME.db, checks it, and
# prints its highest row id (the rows must be exactly 1..max).
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
# restored_at_least NAME N: a restore holds row N.
restored_at_least() { [ "$(restore_now "$1")" -ge "$2" ]; }
metric() {
  curl -s "$URL/metrics" | sed -n "s/^sluice_disk_full{[^}]*} //p"
}
last() { cat "$T/last" 2>/dev/null || echo 0; }
last_ge() { [ "$(last)" -ge "$1" ]; }
metric_is() { [ "$(metric)" = "$1" ]; }
indexes() { ls "$REPLICA"/generations/*/wal | sed -n 's/_.*//p' | sort -u | wc -l; }
indexes_gt() { [ "$(indexes)" -gt "$1" ]; }

python3 "$T/writer.py" "$DB" "$T" pad || fail "pad"
sluice_start -config "$T/sluice.yml"
wait_until 20 test -d "$REPLICA/generations" || fail "no generation"
# The application frees the pad in the connection it then commits on: a
# separate process closing last would let sluice, alone with the database,
# truncate the WAL when it goes to sleep (as SQLite's own last close would
# delete it), and the fill would leave the application no WAL room.
python3 "$T/writer.py" "$DB" "$T" run unpad >"$T/writer.out" 2>&1 &
W=$!
PIDS+=("$W")
wait_until 20 last_ge 20 || fail "the application does not commit"
wait_until 20 restored_at_least before 20 || fail "replica not current before the fill"
[ "$(metric)" = 0 ] || fail "sluice_disk_full is '$(metric)' before the fill"

if [ "$CASE" = restart ]; then
  # Quiet: sluice checkpoints the whole WAL; the next commit restarts it.
  n0=$(grep -c 'without the write lock' "$T/sluice.log")
  : >"$T/pause"
  ckpt_after() { [ "$(grep -c 'without the write lock' "$T/sluice.log")" -gt "$1" ]; }
  wait_until 20 ckpt_after "$n0" || fail "no checkpoint once the application paused"
  paused_at=$(last)
  wait_until 20 ckpt_after "$(grep -c 'without the write lock' "$T/sluice.log")" ||
    true # (one more if a commit was in flight when the pause began)
  [ "$(last)" = "$paused_at" ] || fail "the application did not pause"
  idx_before=$(indexes)
fi

# Fill every free byte, and keep it so: whatever sluice frees (shadow
# files every replica has) is taken again at once.
cat >"$T/filler.py" <<'PY'
import os, sys, time
fs, stop = sys.argv[1], sys.argv[2]
fd = os.open(fs + "/filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
big, small = b"\0" * (1 << 20), b"\0" * 4096
while not os.path.exists(stop):
    for chunk in (big, small, small[:512]):
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                break
    time.sleep(0.01)
PY
python3 "$T/filler.py" "$FS" "$T/stopfill" &
F=$!
PIDS+=("$F")
full_now() { [ "$(df -k --output=avail "$FS" | tail -1 | tr -d ' ')" -eq 0 ]; }
wait_until 30 full_now || fail "the filler did not fill $FS"
fill_start=$(date +%s)
if [ "$CASE" = restart ]; then
  rm -f "$T/pause"
  wait_until 30 indexes_gt "$idx_before" ||
    fail "the WAL restart during the fill did not reach the replica"
  grep -q 'cannot grow: uploading' "$T/sluice.log" || fail "no 'disk full' line"
  grep 'cannot grow: uploading' "$T/sluice.log" | grep -q 'header\|open' ||
    fail "the disk filled elsewhere than at the new shadow file"
fi
df -k "$FS" | tail -1 >&2
wait_until 30 grep -q 'shadow wal cannot grow' "$T/sluice.log" ||
  fail "no 'disk full' line while the filesystem is full"
wait_until 10 metric_is 1 || fail "sluice_disk_full is '$(metric)' during the fill"
# Shadow data every replica has is released (or was pruned already).
meta_kb() { du -sk "$FS/.app.db-litestream" | cut -f1; }
meta_small() { [ "$(meta_kb)" -lt 3000 ]; }
wait_until 10 meta_small || fail "the meta directory keeps $(meta_kb) KB on the full disk"
echo "meta directory during the fill: $(meta_kb) KB"
grep 'disk full: freed' "$T/sluice.log" | sed 's/.*msg=//'
# The application keeps committing, and the replica keeps up with it.
at_fill=$(last)
wait_until 20 last_ge $((at_fill + 50)) ||
  fail "the application stopped committing during the fill ($at_fill -> $(last))"
k=0
while [ $(($(date +%s) - fill_start)) -lt 12 ]; do
  k=$((k + 1))
  want=$(last)
  wait_until 20 restored_at_least "during$k" "$want" ||
    fail "replica not current during the fill: want row $want, restored $(restore_now "during$k")"
  echo "during the fill: row $want committed, restore $k has $(restore_now "during$k")"
  full_now || fail "the disk is not full any more"
  sleep 1
done
grep -q 'disk space available again' "$T/sluice.log" &&
  fail "recovered while the disk is still full"
grep -c 'checkpoint failed' "$T/sluice.log" | grep -qx 0 ||
  fail "checkpoint failures logged during the fill"
: >"$T/stopfill"
wait "$F"

# Free the space: the shadow catches up, checkpoints work again.
rm -f "$FS/filler"
wait_until 30 grep -q 'disk space available again' "$T/sluice.log" ||
  fail "no recovery line after the space was freed"
wait_until 10 metric_is 0 || fail "sluice_disk_full is '$(metric)' after the fill"
before=$(indexes)
wait_until 30 indexes_gt "$before" ||
  fail "no WAL restart (checkpoint) after the space was freed"
want=$(last)
wait_until 20 restored_at_least after "$want" || fail "replica did not converge"
df -k "$FS" | tail -1 >&2

: >"$T/stop"
wait "$W" || fail "writer"
cat "$T/writer.out"
sluice_stop
restore_now final >/dev/null
assert_same_db "$DB" "$T/final.db"

full=$(grep -c 'shadow wal cannot grow' "$T/sluice.log")
rec=$(grep -c 'disk space available again' "$T/sluice.log")
ckf=$(grep -c 'checkpoint failed' "$T/sluice.log")
errs=$(grep -c 'ERROR' "$T/sluice.log")
gens=$(ls "$REPLICA/generations" | wc -l)
echo "log: $full 'disk full', $rec recovery, $ckf 'checkpoint failed', $errs ERROR lines; $gens generation(s), $(rows "$T/final.db") rows"
[ "$full" -eq 1 ] || { grep 'cannot grow' "$T/sluice.log" >&2; fail "$full 'disk full' lines, want 1"; }
[ "$rec" -eq 1 ] || fail "$rec recovery lines, want 1"
[ "$ckf" -le 1 ] || fail "$ckf 'checkpoint failed' lines"
[ "$errs" -eq 1 ] || { grep ERROR "$T/sluice.log" >&2; fail "$errs ERROR lines, want 1"; }
[ "$gens" -eq 1 ] || fail "$gens generations, want 1"
echo PASS
