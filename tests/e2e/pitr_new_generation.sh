#!/usr/bin/env bash
# A new generation's snapshot of a large WAL: restores in between stay
# consistent.
#
# sluice starts on a database whose WAL holds 12 MB of commits (a writer
# keeps it open, with no checkpoints).  The new generation's snapshot is
# the database at the end of that WAL (index N, offset S), uploaded first;
# the segments of N follow.  WAL segments are cut at 8 MB, but a restore
# that found the snapshot and only the first 8 MB of N would replay them
# over an image holding all of it: the first segment after the snapshot
# must reach S in one object.  Every object time is restored (as in
# pitr_snapshot_order) and must be a commit of the source.
source "$SRCDIR/tests/lib/common.sh"
command -v lz4 >/dev/null || fail "lz4 CLI missing"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: file
        url: file://$T/replica
        sync-interval: 100ms
YML

# The writer: 3,000 rows of 1 KB checkpointed into the file, then commits
# of 25 random rows each until the WAL passes 12 MB (touches $T/ready),
# then a commit every 50 ms until $T/stop.  "k digest" per commit.
python3 - "$T" >"$T/commits" 2>"$T/writer.err" <<'PY' &
import hashlib, os, random, sqlite3, sys, time
T = sys.argv[1]
c = sqlite3.connect(T + "/app.db", isolation_level=None)
c.execute("PRAGMA journal_mode=WAL")
c.execute("PRAGMA busy_timeout=10000")
c.execute("CREATE TABLE meta(k INTEGER)")
c.execute("INSERT INTO meta VALUES (0)")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
c.execute("BEGIN")
c.executemany("INSERT INTO t(v) VALUES (?)",
              [(os.urandom(1000),) for _ in range(3000)])
c.execute("COMMIT")
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.execute("PRAGMA wal_autocheckpoint=0")
random.seed(7)
def rh(i, v):
    return int.from_bytes(hashlib.sha1(b"%d:" % i + v).digest()[:8], "big")
rows = dict(c.execute("SELECT id, v FROM t"))
dig = sum(rh(i, v) for i, v in rows.items()) % 2**64
print(0, "%016x" % dig, flush=True)
k = 0
def commit(n):
    global k, dig
    k += 1
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE meta SET k = ?", (k,))
    for _ in range(n):
        i = random.randrange(1, 3001)
        v = os.urandom(1000)
        c.execute("UPDATE t SET v = ? WHERE id = ?", (v, i))
        dig = (dig - rh(i, rows[i]) + rh(i, v)) % 2**64
        rows[i] = v
    c.execute("COMMIT")
    print(k, "%016x" % dig, flush=True)
while os.path.getsize(T + "/app.db-wal") < 12 << 20:
    commit(25)
open(T + "/ready", "w").close()
end = time.time() + 60
while not os.path.exists(T + "/stop") and time.time() < end:
    commit(3)
    time.sleep(0.05)
PY
WRITER=$!
PIDS+=("$WRITER")
wait_until 60 test -f "$T/ready" || { cat "$T/writer.err"; fail "writer: no 12 MB WAL"; }
sluice_start -config "$T/sluice.yml"
have_first() { ls "$T"/replica/generations/*/wal/*_00000000.wal.lz4; }
wait_until 60 have_first || fail "no segment uploaded"
sleep 1 # (a few of the slow commits after it)
touch "$T/stop"
wait "$WRITER" || { cat "$T/writer.err"; fail "writer failed"; }
sluice_stop

# The generation's first snapshot (of the 12 MB WAL: index 0, unless it
# was refused and taken again later) and its index's first segment: one
# object past 8 MB.
snap=$(ls "$T"/replica/generations/*/snapshots/ | head -1)
idx=${snap%%.*}
first=$(ls "$T"/replica/generations/*/wal/"${idx}"_00000000.wal.lz4)
size=$(lz4 -dc "$first" | wc -c)
if [ "$idx" = 00000000 ]; then
  [ "$size" -gt $((8 << 20)) ] ||
    fail "the first segment after the snapshot is $size bytes: cut before the snapshot's end"
fi

find "$T/replica" -path "*/generations/*" -name '*.lz4' -printf '%T@ %P\n' |
  awk '{split($1, a, "."); printf "%s%s %s\n", a[1], substr(a[2] "000000000", 1, 9), $2}' \
    >"$T/times.file"
python3 "$SRCDIR/tests/tools/pitr_check.py" "$SLUICE" "$T" 400 file ||
  fail "restores"
echo "PASS: first segment of index $idx: $size bytes, $(($(wc -l <"$T/commits") - 1)) commits"
