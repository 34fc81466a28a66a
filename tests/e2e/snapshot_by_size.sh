#!/usr/bin/env bash
# snapshot-wal-factor: once the WAL shipped since the last snapshot passes
# factor x the database size, a new snapshot of the same generation is
# taken; retention then removes what is below the oldest snapshot still in
# the window.  Every point inside the retention window still restores:
# after each commit reaches the replica, the source's content is recorded
# with the time, and a restore at that time must give the same content.
source "$SRCDIR/tests/lib/common.sh"
command -v lz4 >/dev/null || fail "lz4 CLI missing"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
        snapshot-wal-factor: 1
        retention: 12s
        retention-check-interval: 1s
YML
python3 - "$T/app.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute("PRAGMA journal_mode=WAL")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
c.executemany("INSERT INTO t(v) VALUES (hex(randomblob(500)))", [()] * 1000)
c.commit()
PY
sluice_start -config "$T/sluice.yml"
have_wal() { ls "$T"/replica/generations/*/wal/*.wal.lz4 >/dev/null 2>&1; }
wait_until 20 have_wal || fail "nothing replicated"

# Commits of random updates; after each, wait for the segment objects,
# then record (time, content digest).  Prints "RFC3339-time digest" lines.
python3 - "$T/app.db" "$T/replica" >"$T/points" <<'PY' || fail "writer"
import datetime, glob, hashlib, os, random, sqlite3, subprocess, sys, time
db, rep = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA busy_timeout=5000")
random.seed(3)
bare = {}
def is_bare(f):
    # A WAL restart uploads the new index's header alone (32 bytes) before
    # any frame: it is not the commit reaching the replica.  Under load
    # the frames can follow more than the quiet time below later.
    if not f.endswith("_00000000.wal.lz4") or os.path.getsize(f) > 256:
        return False
    if f not in bare:
        out = subprocess.run(["lz4", "-d", "-c", f], capture_output=True)
        bare[f] = out.returncode == 0 and len(out.stdout) == 32
    return bare[f]
def newest():
    best = 0
    for f in glob.glob(rep + "/generations/*/wal/*.wal.lz4"):
        try:
            if not is_bare(f):
                best = max(best, os.stat(f).st_mtime_ns)
        except FileNotFoundError:
            pass  # removed by retention meanwhile
    return best
def digest():
    h = hashlib.sha1()
    for row in c.execute("SELECT id, v FROM t ORDER BY id"):
        h.update(repr(row).encode())
    return h.hexdigest()
for i in range(50):
    before = newest()
    lo = random.randrange(1000)
    c.execute("UPDATE t SET v = hex(randomblob(500)) WHERE id % 7 = ? OR id BETWEEN ? AND ?",
              (i % 7, lo, lo + 30))
    t0 = time.time()
    while newest() == before:
        if time.time() - t0 > 10:
            sys.exit("commit %d not replicated" % i)
        time.sleep(0.005)
    # A commit may span several segment objects: wait until nothing new
    # has arrived for 0.3 s, so all of it is there.
    last, since = newest(), time.time()
    while time.time() - since < 0.3:
        time.sleep(0.01)
        if newest() != last:
            last, since = newest(), time.time()
    now = datetime.datetime.now(datetime.timezone.utc)
    print(now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), time.time(), digest(), flush=True)
    time.sleep(0.05)
PY
wait_until 20 grep -q "objects below index" "$T/sluice.log" ||
  fail "retention removed nothing below a newer snapshot"
sizes=$(grep -c "bytes of WAL shipped since the last one" "$T/sluice.log")
[ "$sizes" -ge 3 ] || fail "expected at least 3 size-triggered snapshots, got $sizes"
# Each at the start of a WAL index (the engine ends the one it came due in),
# not within it: the writer leaves quiet moments for that checkpoint.
! grep "bytes of WAL shipped since the last one" "$T/sluice.log" |
  grep "taken within it" || fail "a size-triggered snapshot within its WAL index"
nsnap=$(ls "$T"/replica/generations/*/snapshots/ | wc -l)
ngen=$(ls "$T"/replica/generations | wc -l)
[ "$ngen" -eq 1 ] || fail "expected one generation, got $ngen"

stopped=$(date +%s.%N)
sluice_stop # the replica stays as retention left it

# Every recorded point inside the retention window when sluice stopped
# (less the 1 s between retention checks) restores to the content it had.
# The writer ran longer than the retention: retention has run.
checked=0
while read -r when epoch want; do
  awk -v e="$epoch" -v n="$stopped" 'BEGIN {exit !(e > n - 11)}' || continue
  out="$T/at-$checked.db"
  "$SLUICE" restore -o "$out" -timestamp "$when" "file://$T/replica" \
    >"$T/restore.log" 2>&1 </dev/null || { cat "$T/restore.log"; fail "restore at $when"; }
  got=$(python3 -c '
import hashlib, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
h = hashlib.sha1()
for row in c.execute("SELECT id, v FROM t ORDER BY id"):
    h.update(repr(row).encode())
print(h.hexdigest())' "$out" </dev/null)
  [ "$got" = "$want" ] || fail "restore at $when differs from the source then"
  checked=$((checked + 1))
done <"$T/points"
[ "$checked" -ge 8 ] || fail "only $checked points checked of $(wc -l <"$T/points"), last at $(tail -1 "$T/points" | cut -d" " -f2), stopped $stopped"
echo "PASS: $sizes size-triggered snapshots, $nsnap kept, $checked points in the window restored"
