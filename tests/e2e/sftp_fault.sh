#!/usr/bin/env bash
# The SFTP server fails under sluice.
#  1. sshd (and the processes serving its connections) killed with SIGKILL
#     in the middle of an upload (an 80 MB snapshot, its .tmp seen growing
#     on the server), and again twice while a writer commits; restarted on
#     the same port each time.  Replication resumes by itself and nothing
#     is lost: a restore equals the source, no temporary file is left.
#  2. A full remote disk: the replica directory is a 3 MB tmpfs (in a mount
#     namespace of this test's own).  Uploads fail with one clear error
#     naming the object and saying the disk is full; the temporary file is
#     removed; after the tmpfs is grown, replication catches up and the
#     restore equals the source.
if [ -z "${SLUICE_SFTP_MNTNS:-}" ] && command -v unshare >/dev/null &&
  unshare -m true 2>/dev/null; then
  SLUICE_SFTP_MNTNS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/sshd.sh"
sshd_start
trap 'sshd_stop KILL; umount "$T/small" 2>/dev/null; cleanup' EXIT
H=127.0.0.1:$SSHD_PORT

caught_up() { # CONFIG
  rm -f "$T/probe.db"
  "$SLUICE" restore -config "$1" -o "$T/probe.db" "$T/app.db" >/dev/null 2>&1 &&
    [ "$(dump "$T/probe.db" | md5sum)" = "$(dump "$T/app.db" | md5sum)" ]
}

# --- 1. the server killed mid-upload ---
mkdir -p "$T/remote"
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: sftp://root@$H$T/remote/app
        key-path: $SSHD_KEY
        host-key-path: $SSHD_KNOWN_HOSTS
        sync-interval: 100ms
YML
sqlite3 "$T/app.db" "PRAGMA journal_mode=WAL;
  CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);
  WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 20000)
  INSERT INTO t SELECT i, i, randomblob(4000) FROM c;" >/dev/null
sluice_start -config "$T/sluice.yml"
tmp_growing() {
  local f
  f=$(find "$T/remote" -name '*.snapshot.lz4.tmp' | head -1)
  [ -n "$f" ] && [ "$(stat -c %s "$f" 2>/dev/null || echo 0)" -gt 1000000 ]
}
wait_until 60 tmp_growing || fail "no snapshot upload seen in progress"
partial=$(find "$T/remote" -name '*.snapshot.lz4.tmp' -printf '%s\n' | head -1)
sshd_stop KILL
echo "sshd killed with $partial bytes of the snapshot's .tmp on the server"
sleep 1
sshd_restart
wait_until 60 sh -c "find '$T/remote' -name '*.snapshot.lz4' | grep -q ." ||
  fail "the snapshot was not uploaded after the restart"

"$SQLWRITER" -db "$T/app.db" -duration 8 -rate 1000 -update-every 7 \
  -delete-every 11 >"$T/writer.out" &
writer=$!
PIDS+=("$writer")
for _ in 1 2; do
  sleep 2
  sshd_stop KILL
  sleep 1
  sshd_restart
done
wait "$writer" || fail "writer failed"
wait_until 60 caught_up "$T/sluice.yml" || fail "replication did not catch up"
sluice_stop
grep -Eq 'connection to 127.0.0.1:[0-9]+ lost|replica sync error' "$T/sluice.log" ||
  fail "the outages were not noticed"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
[ -z "$(find "$T/remote" -name '*.tmp')" ] ||
  fail "temporary files left on the server: $(find "$T/remote" -name '*.tmp')"
echo "kill -9: $(grep -c 'lost' "$T/sluice.log") lost-connection lines, first:"
grep -m1 'lost' "$T/sluice.log" | cut -c1-250
echo "kill -9: $(cat "$T/writer.out"), $(rows "$T/restored.db") rows restored"

# --- 2. a full remote disk ---
if [ -z "${SLUICE_SFTP_MNTNS:-}" ] ||
  ! mkdir -p "$T/small" || ! mount -t tmpfs -o size=3m tmpfs "$T/small"; then
  echo "full-disk case skipped: cannot mount a tmpfs here"
  echo PASS
  exit 0
fi
rm -rf "$T/app.db" "$T/app.db-wal" "$T/app.db-shm" "$T/.app.db-litestream"
: >"$T/sluice.log"
cat >"$T/small.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: sftp://root@$H$T/small/app
        key-path: $SSHD_KEY
        host-key-path: $SSHD_KNOWN_HOSTS
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sluice_start -config "$T/small.yml"
wait_until 20 grep -q 'snapshot written' "$T/sluice.log" || fail "no snapshot"
# About 6 MB of incompressible rows: more than the 3 MB disk holds.
for i in 1 2 3; do
  sqlite3 -cmd ".timeout 10000" "$T/app.db" "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 500)
    INSERT INTO t(k, v) SELECT i, randomblob(4000) FROM c;" || fail "insert $i"
done
wait_until 30 grep -q 'disk is full' "$T/sluice.log" ||
  fail "no 'disk is full' error with a 3 MB remote disk"
line=$(grep -m1 'disk is full' "$T/sluice.log")
echo "full disk: $(echo "$line" | cut -c1-300)"
echo "$line" | grep -Eq "sftp://root@$H$T/small/app/generations/[0-9a-f]{16}/(wal|snapshots)/[0-9a-f_]+\.(wal|snapshot)\.lz4" ||
  fail "the disk-full error does not name the object"
# The failed upload's temporary file is removed (nothing half written is
# left to fill the disk further).
no_tmp() { [ -z "$(find "$T/small" -name '*.tmp')" ]; }
wait_until 10 no_tmp || fail "temporary file left on the full disk"
caught_up "$T/small.yml" && fail "caught up on a full disk?"
# Recovery: the disk grows, replication catches up by itself.
mount -o remount,size=64m "$T/small" || fail "cannot grow the tmpfs"
wait_until 90 caught_up "$T/small.yml" || fail "no recovery after the disk grew"
sluice_stop
grep -q 'replica sync recovered' "$T/sluice.log" || fail "no recovery logged"
"$SLUICE" restore -config "$T/small.yml" -o "$T/small-restored.db" "$T/app.db" \
  >"$T/restore2.log" 2>&1 || { cat "$T/restore2.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/small-restored.db"
[ "$("$SLUICE" generations -config "$T/small.yml" "$T/app.db" | tail -n +2 | wc -l)" = 1 ] ||
  fail "expected one generation"
echo "PASS: full disk recovered, $(rows "$T/small-restored.db") rows"
