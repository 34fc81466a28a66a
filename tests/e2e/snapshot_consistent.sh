#!/usr/bin/env bash
# Every snapshot is a database on its own.  A writer grows the database
# (each commit adds a row, rewrites the previous one and counts the rows
# in another table) while application readers hold short read
# transactions, so checkpoints keep stopping half-way: the database file
# then mixes two states (page 1 of one commit, not the new last page a
# later commit rewrote: e2e/age_encryption saw 48 pages in the header, 47
# in the file).  Size-triggered snapshots are taken meanwhile and at
# shutdown.  Each must pass integrity_check alone, hold as many pages as
# its header says, and have its row count equal its counter (one commit's
# state); restore gives the source's rows, one generation.
source "$SRCDIR/tests/lib/common.sh"
command -v lz4 >/dev/null || fail "lz4 CLI missing"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    min-checkpoint-page-count: 60
    replicas:
      - url: file://$T/replica
        sync-interval: 50ms
        snapshot-wal-factor: 1
YML
python3 - "$T/app.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
c.execute("CREATE TABLE m(n INTEGER)")
c.execute("INSERT INTO m VALUES (0)")
c.commit()
PY
sluice_start -config "$T/sluice.yml"
wait_until 30 sh -c "ls $T/replica/generations/*/snapshots/*.lz4" || fail "no snapshot"

python3 - "$T/app.db" "${DURATION:-6}" <<'PY' || fail "writer"
import sqlite3, sys, threading, time
db, dur = sys.argv[1], float(sys.argv[2])
stop = time.time() + dur
def reader():
    r = sqlite3.connect(db, isolation_level=None)
    r.execute("PRAGMA busy_timeout=5000")
    while time.time() < stop:
        r.execute("BEGIN")
        r.execute("SELECT n FROM m").fetchone()
        time.sleep(0.015)
        r.execute("COMMIT")
        time.sleep(0.05)  # gaps, so that the WAL can restart too
th = [threading.Thread(target=reader)]
for x in th:
    x.start()
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA busy_timeout=5000")
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("PRAGMA synchronous=NORMAL")
n = 0
while time.time() < stop:
    c.execute("BEGIN IMMEDIATE")
    c.execute("INSERT INTO t(v) VALUES (randomblob(3000))")
    c.execute("UPDATE t SET v = randomblob(3000) WHERE id = (SELECT max(id) - 1 FROM t)")
    c.execute("UPDATE m SET n = n + 1")
    c.execute("COMMIT")
    n += 1
    # The new last page alone, in a commit of its own.
    c.execute("UPDATE t SET v = randomblob(3000) WHERE id = (SELECT max(id) FROM t)")
    time.sleep(0.002)
for x in th:
    x.join()
print(n, "commits")
PY
# Stop right after the writer: a size-triggered snapshot may be taken
# during the shutdown.
sluice_stop

nsnap=0
for f in "$T"/replica/generations/*/snapshots/*.snapshot.lz4; do
  lz4 -d -c "$f" >"$T/snap.db" 2>/dev/null || fail "$f: lz4 -d failed"
  size=$(stat -c %s "$T/snap.db")
  hdr=$(od -An -tu1 -j28 -N4 "$T/snap.db" | awk '{print $1*16777216+$2*65536+$3*256+$4}')
  [ $((size / 4096)) = "$hdr" ] ||
    fail "$f: $((size / 4096)) pages, its header says $hdr"
  ic=$(sqlite3 "$T/snap.db" 'PRAGMA integrity_check' 2>&1)
  [ "$ic" = ok ] || fail "$f: integrity_check: $ic"
  read -r rows counter < <(sqlite3 -separator ' ' "$T/snap.db" \
    'SELECT (SELECT count(*) FROM t), (SELECT n FROM m)')
  [ "$rows" = "$counter" ] || fail "$f: $rows rows, counter $counter (not one commit's state)"
  rm -f "$T/snap.db"*
  nsnap=$((nsnap + 1))
done
[ "$nsnap" -ge 3 ] || fail "expected several size-triggered snapshots, got $nsnap"
[ "$(find "$T/replica/generations" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 1 ] ||
  fail "expected one generation"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "$nsnap snapshots, each consistent on its own; restore equal"
echo PASS
