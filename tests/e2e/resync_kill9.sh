#!/usr/bin/env bash
# kill -9 of sluice, repeatedly, under a writer whose application runs its
# own TRUNCATE checkpoints: each time, the TRUNCATE completes while sluice
# is down (the test waits for the WAL to restart), so the frames since
# sluice's last copy exist only in the database file.  sluice must resync
# (ship the changed pages as a WAL index of the same generation), not
# start a new generation.  At the end: one generation, the restore equals
# the source, the resync bytes are reported, and the first resync segment
# is checked as a WAL by format (salts, checksum chain, commit frame) and
# applied by the sqlite3 CLI itself.
#
# KILLS (default 12) and DB_MB (default 4) size it; tests/soak/kill9.sh
# runs 200 kills on a 70 MB database.
source "$SRCDIR/tests/lib/common.sh"
KILLS=${KILLS:-12}
DB_MB=${DB_MB:-4}
REPORT=${REPORT:-$T/report.txt}

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML
# The initial database: DB_MB of 1000-byte rows.
"$SQLWRITER" -db "$T/app.db" -n "$DB_MB" -rows 1000 -size 1000 >/dev/null ||
  fail "cannot create the database"
sluice_start -config "$T/sluice.yml"
wait_until 30 grep -q "snapshot written" "$T/sluice.log" ||
  fail "no snapshot uploaded"

# The application: inserts, updates of random old rows (changes pages all
# over the file), and a TRUNCATE checkpoint every 25 transactions.
"$SQLWRITER" -db "$T/app.db" -duration 100000 -rate 150 -update-every 2 \
  -truncate-every 25 >"$T/writer.out" 2>&1 &
WRITER=$!
PIDS+=("$WRITER")

wal_salts() { od -An -tx1 -j16 -N8 "$T/app.db-wal" 2>/dev/null | tr -d ' \n'; }
wal_restarted() { [ "$(wal_salts)" != "$1" ]; }
resyncs() { grep -c "resync: .*\(pages differ\|matches\)" "$T/sluice.log"; }
resynced_since() { [ "$(resyncs)" -gt "$1" ]; }

for i in $(seq 1 "$KILLS"); do
  # Let sluice copy a while (a random point in the writer's cycle).
  sleep "0.$((RANDOM % 6 + 2))"
  kill -0 "$WRITER" 2>/dev/null || fail "writer died: $(cat "$T/writer.out")"
  kill -9 "$SLUICE_PID"
  wait "$SLUICE_PID" 2>/dev/null
  salts=$(wal_salts)
  # With sluice gone, the application's next TRUNCATE completes and the
  # WAL restarts: continuity is really lost.
  wait_until 30 wal_restarted "$salts" ||
    fail "kill $i: the application's TRUNCATE never completed"
  before=$(resyncs)
  sluice_start -config "$T/sluice.yml"
  wait_until 60 resynced_since "$before" ||
    fail "kill $i: no resync logged after the restart"
done

kill -TERM "$WRITER"
wait "$WRITER" || fail "writer failed: $(cat "$T/writer.out")"
sluice_stop

ngen=$(ls "$T/replica/generations" | wc -l)
newgen=$(grep -c "new generation" "$T/sluice.log")
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"

# Per-kill resync bytes, from the log line of each resync.
grep "resync: .*\(pages differ\|matches\)" "$T/sluice.log" |
  sed -n 's/.*: \([0-9]*\) of \([0-9]*\) pages .*shipped \([0-9]*\) bytes.*/\1 \2 \3/p;
          s/.*database file matches.*/0 0 0/p' >"$T/resync.txt"
db_bytes=$(stat -c %s "$T/app.db")
replica_bytes=$(du -sb "$T/replica" | cut -f1)
{
  echo "kills=$KILLS generations=$ngen new_generation_lines=$newgen"
  echo "writer: $(cat "$T/writer.out")"
  sort -n -k3 "$T/resync.txt" | awk '{n++; b+=$3; p+=$1; v[n]=$3}
    END {printf "resyncs=%d pages=%d bytes_total=%d min=%d median=%d max=%d\n",
         n, p, b, v[1], v[int((n+1)/2)], v[n]}'
  echo "database=$db_bytes bytes replica=$replica_bytes bytes"
  echo "per-kill resync bytes: $(awk '{print $3}' "$T/resync.txt" | tr '\n' ' ')"
} | tee "$REPORT"

[ "$ngen" -eq 1 ] || fail "$ngen generations after $KILLS kills (want 1)"
[ "$newgen" -eq 1 ] || fail "new generation logged $newgen times: $(grep 'new generation' "$T/sluice.log" | tail -3)"
[ "$(wc -l <"$T/resync.txt")" -ge "$KILLS" ] || fail "fewer resyncs than kills"
# A resync ships a few pages, never a database: each one below the size of
# the database, and all of them together below twice its size.
total=$(awk '{b+=$3} END {print b+0}' "$T/resync.txt")
awk -v db="$db_bytes" '$3 >= db {exit 1}' "$T/resync.txt" ||
  fail "a resync shipped as much as the whole database"

# --- format: the first resync segment is a valid WAL of the index it
# claims, and the sqlite3 CLI applies it. ---
gen=$(ls "$T/replica/generations")
idx=$(grep -m1 -o "as wal index [0-9a-f]*" "$T/sluice.log" | awk '{print $4}')
[ -n "$idx" ] || fail "no resync segment was shipped"
prev=$(printf '%08x' $((16#$idx - 1)))
catseg() { # INDEX OUT: the decompressed segments of one index, in order
  : >"$2"
  for f in $(ls "$T/replica/generations/$gen/wal/" | grep "^$1_" | sort); do
    lz4 -dc "$T/replica/generations/$gen/wal/$f" >>"$2" || fail "lz4 -d $f"
  done
}
catseg "$idx" "$T/seg.wal"
catseg "$prev" "$T/prev.wal"
python3 - "$T/seg.wal" "$T/prev.wal" <<'PY' || fail "resync segment $idx is not a valid WAL"
import struct, sys
seg, prev = open(sys.argv[1], 'rb').read(), open(sys.argv[2], 'rb').read()
def cksum(be, data, s0, s1):
    fmt = ('>' if be else '<') + '%dI' % (len(data) // 4)
    w = struct.unpack(fmt, data)
    for i in range(0, len(w), 2):
        s0 = (s0 + w[i] + s1) & 0xffffffff
        s1 = (s1 + w[i + 1] + s0) & 0xffffffff
    return s0, s1
magic, ver, ps, seq, salt1, salt2, c0, c1 = struct.unpack('>8I', seg[:32])
assert magic in (0x377f0682, 0x377f0683), hex(magic)
be = magic & 1
assert ver == 3007000, ver
ps = 65536 if ps == 1 else ps
assert cksum(be, seg[:24], 0, 0) == (c0, c1), 'header checksum'
_, _, _, pseq, psalt1, _, _, _ = struct.unpack('>8I', prev[:32])
assert salt1 == (psalt1 + 1) & 0xffffffff and seq == (pseq + 1) & 0xffffffff, \
    'salt-1/sequence do not follow the previous index'
s0, s1 = c0, c1
fs = 24 + ps
assert (len(seg) - 32) % fs == 0 and len(seg) > 32, 'not whole frames'
n = (len(seg) - 32) // fs
for k in range(n):
    f = seg[32 + k * fs: 32 + (k + 1) * fs]
    pgno, commit, fs1, fs2, f0, f1 = struct.unpack('>6I', f[:24])
    assert (fs1, fs2) == (salt1, salt2), 'frame %d salts' % k
    s0, s1 = cksum(be, f[:8], s0, s1)
    s0, s1 = cksum(be, f[24:], s0, s1)
    assert (s0, s1) == (f0, f1), 'frame %d checksum chain' % k
    assert (commit != 0) == (k == n - 1), 'frame %d commit field %d' % (k, commit)
print('resync segment: %d frames, salts %08x/%08x, checksum chain ok, commit db size %d pages' % (n, salt1, salt2, commit))
PY
# Raw WAL application by SQLite: the database as of the index before, with
# the segment as its -wal, checkpointed by the sqlite3 CLI.
"$SLUICE" restore -config "$T/sluice.yml" -index "$prev" -o "$T/before.db" \
  "$T/app.db" >"$T/restore2.log" 2>&1 || { cat "$T/restore2.log"; fail "restore -index $prev"; }
"$SLUICE" restore -config "$T/sluice.yml" -index "$idx" -o "$T/after.db" \
  "$T/app.db" >"$T/restore3.log" 2>&1 || { cat "$T/restore3.log"; fail "restore -index $idx"; }
cp "$T/seg.wal" "$T/before.db-wal"
nframes=$(( ($(stat -c %s "$T/seg.wal") - 32) / ($(sqlite3 "$T/after.db" 'PRAGMA page_size') + 24) ))
ck=$(sqlite3 "$T/before.db" 'PRAGMA wal_checkpoint(PASSIVE)')
[ "$ck" = "0|$nframes|$nframes" ] ||
  fail "sqlite3 applied $ck of $nframes frames"
assert_same_db "$T/after.db" "$T/before.db"
cmp -s "$T/after.db" "$T/before.db" ||
  fail "the sqlite3 CLI's application of the segment differs from sluice's restore"
echo "PASS: $KILLS kills, 1 generation, resyncs total $total bytes for a $db_bytes-byte database"
