#!/usr/bin/env bash
# `watch: true` live discovery (dir + pattern + recursive + watch), on file
# replicas (KIND=file, the default) or S3 on moto (KIND=s3, dir_watch_s3.sh):
# a dir that does not exist yet is waited for (one line); tenants created
# (one measured: replicating within 1 s), one created empty and filled a
# moment later, one in a new subdirectory, deleted (final sync: every row
# written before the delete restores; no fd left) and renamed (a delete
# plus a create) while two others keep writing; then each tenant restores
# by its path, and the whole dir with `restore -o OUTDIR DIR`, every row
# compared, one generation each.
source "$SRCDIR/tests/lib/common.sh"
KIND=${KIND:-file}

mkdb() { # mkdb PATH ROWS
  mkdir -p "$(dirname "$1")"
  sqlite3 -cmd ".timeout 5000" "$1" "PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);" >/dev/null ||
    fail "cannot create $1"
  add_rows "$1" "$2"
}
add_rows() { # add_rows PATH N
  sqlite3 -cmd ".timeout 5000" "$1" "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s
    WHERE i < $2) INSERT INTO t(v) SELECT randomblob(300) FROM s;" ||
    fail "cannot write $1"
}
writer() { # writer PATH: commits until $T/stop exists
  while [ ! -e "$T/stop" ]; do
    add_rows "$1" 3
    sleep 0.05
  done
}
# snapshot_line REL: the log line of the first snapshot uploaded for it.
snapshot_line() {
  grep -F "db=$TEN/$1 replica=" "$T/sluice.log" | grep -m1 'msg="snapshot written'
}
replicated() { snapshot_line "$1" >/dev/null; }
log_ms() { # log_ms LINE: its time= in ms since the epoch
  local ts=${1#time=}
  date -d "${ts%% *}" +%s%3N
}

TEN=$T/ten
if [ "$KIND" = s3 ]; then
  need_servers
  MOTO=http://127.0.0.1:5000
  curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/" || skip "moto not running"
  export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
  export AWS_CONFIG_FILE=/nonexistent
  B=sluice-dirwatch-$$-$RANDOM
  s3_mb "$MOTO" "$B" ||
    fail "cannot create the moto bucket"
  REPLICA="      type: s3
      bucket: $B
      path: tenants
      endpoint: $MOTO
      region: us-east-1
      force-path-style: true
      access-key-id: S3RVER
      secret-access-key: S3RVER"
else
  REPLICA="      url: file://$T/rep"
fi
cat >"$T/sluice.yml" <<YML
dbs:
  - dir: $TEN
    pattern: "*.db"
    recursive: true
    watch: true
    monitor-interval: 200ms
    replica:
$REPLICA
      sync-interval: 100ms
YML

# The dir does not exist yet: waited for, with one line.
sluice_start -config "$T/sluice.yml"
wait_until 10 grep -q "dir $TEN does not exist yet" "$T/sluice.log" ||
  fail "missing dir not reported"
# Created after the start (the databases below replicating is the proof;
# the "exists now" line is there unless the dir appeared before the daemon
# finished starting).
sleep 0.5
mkdir -p "$TEN/acme"
[ "$(grep -c "dir $TEN does not exist yet" "$T/sluice.log")" -eq 1 ] ||
  fail "missing dir reported more than once"

# Tenants that keep writing through everything below.
mkdb "$TEN/acme/app.db" 20
mkdb "$TEN/beta.db" 10
mkdb "$TEN/gone.db" 10
mkdb "$TEN/old-name.db" 10
for r in acme/app.db beta.db gone.db old-name.db; do
  wait_until 20 replicated "$r" || fail "$r not replicated"
done
writer "$TEN/acme/app.db" & WPIDS=($!)
writer "$TEN/beta.db" & WPIDS+=($!)
PIDS+=("${WPIDS[@]}")

# Discovery latency: file created -> its snapshot uploaded.
t0=$(date +%s%3N)
mkdb "$TEN/new.db" 5
wait_until 10 replicated new.db || fail "new.db not replicated"
lat=$(($(log_ms "$(snapshot_line new.db)") - t0))
echo "discovery latency ($KIND): $lat ms (file created -> snapshot uploaded)"
# The goal is 1 s (20-400 ms measured on a quiet machine, printed above);
# the bar here is loose so a loaded machine passes, and still catches a
# discovery that waits for a rescan instead of the watch.
[ "$lat" -lt 5000 ] || fail "new.db replicating after $lat ms (goal 1000, bar 5000)"

# Created empty, filled a moment later (once it has the header).
: >"$TEN/late.db"
sleep 0.3
replicated late.db && fail "an empty file was replicated"
mkdb "$TEN/late.db" 8
wait_until 10 replicated late.db || fail "a file filled after creation not replicated"

# A new subdirectory (recursive) and a database in it.
mkdir -p "$TEN/gamma/deep"
mkdb "$TEN/gamma/deep/g.db" 7
wait_until 10 replicated gamma/deep/g.db || fail "tenant in a new subdirectory not replicated"

# Deleted right after a write: the final sync ships it, every fd goes.
add_rows "$TEN/gone.db" 40
sqlite3 -cmd ".timeout 5000" "$TEN/gone.db" ".backup $T/gone-copy.db"
rm -f "$TEN/gone.db" "$TEN/gone.db-wal" "$TEN/gone.db-shm"
wait_until 20 grep -q "database removed from replication\" db=$TEN/gone.db" "$T/sluice.log" ||
  fail "deleted database not stopped"
n=$(find "/proc/$SLUICE_PID/fd" -lname "*gone.db*" 2>/dev/null | wc -l)
[ "$n" -eq 0 ] || fail "$n fds still open on the deleted database"

# Renamed: a delete plus a create, as an application renames its
# database: once nothing writes it and every row is in the database file
# (here: sluice's idle checkpoint done, the database in light sleep), so
# the -wal left behind holds nothing.  A database and its -wal cannot be
# renamed in one step: whoever opens the new name in between (sluice does,
# within milliseconds) creates a new -wal, which the second mv then
# replaces under its open descriptors, and the rows only in the moved
# -wal are lost to every connection (this test did that once: a row of
# new-name.db missing under load 30).
add_rows "$TEN/old-name.db" 5
fds() { find "/proc/$SLUICE_PID/fd" -lname "$1" 2>/dev/null | wc -l; }
light() { [ "$(fds "$1")$(fds "$1-wal")$(fds "$1-shm")" = 111 ]; }
wait_until 60 light "$TEN/old-name.db" || fail "old-name.db not in light sleep"
# (Light sleep's fds are the same as a woken database's: wait until every
# row is in the database file itself, none only in its -wal.)
in_file() {
  rm -f "$T/infile.db" "$T/infile.db-wal" "$T/infile.db-shm"
  cp "$1" "$T/infile.db" && [ "$(rows "$T/infile.db")" -eq "$(rows "$1")" ]
}
wait_until 60 in_file "$TEN/old-name.db" || fail "old-name.db's rows not checkpointed"
mv "$TEN/old-name.db" "$TEN/new-name.db"
rm -f "$TEN/old-name.db-wal" "$TEN/old-name.db-shm"
wait_until 20 grep -q "database removed from replication\" db=$TEN/old-name.db" "$T/sluice.log" ||
  fail "renamed database not stopped under its old name"
wait_until 20 replicated new-name.db || fail "renamed database not replicated under its new name"
add_rows "$TEN/new-name.db" 5
add_rows "$TEN/gamma/deep/g.db" 3

touch "$T/stop"
wait "${WPIDS[@]}"
sleep 0.5
sluice_stop
grep -q "level=ERROR" "$T/sluice.log" && fail "errors logged: $(grep level=ERROR "$T/sluice.log" | head -3)"

# (Compared with its source below: rows lost from the source too would pass.)
[ "$(rows "$TEN/new-name.db")" -eq 20 ] || fail "new-name.db has $(rows "$TEN/new-name.db") rows, want 20"

# Each tenant restores by its path.
for r in acme/app.db beta.db new.db late.db gamma/deep/g.db new-name.db; do
  out=$T/restored/$r
  mkdir -p "$(dirname "$out")"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$out" "$TEN/$r" >"$T/restore.log" 2>&1 ||
    fail "restore of $r failed: $(cat "$T/restore.log")"
  assert_same_db "$TEN/$r" "$out"
  gens=$("$SLUICE" generations -config "$T/sluice.yml" "$TEN/$r" | tail -n +2 | wc -l)
  [ "$gens" -eq 1 ] || fail "$r has $gens generations, want 1"
done
# The deleted tenant restores to what it held when deleted.
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/gone-restored.db" "$TEN/gone.db" \
  >"$T/restore.log" 2>&1 || fail "restore of the deleted tenant failed: $(cat "$T/restore.log")"
assert_same_db "$T/gone-copy.db" "$T/gone-restored.db"
[ "$(rows "$T/gone-restored.db")" -eq 50 ] || fail "deleted tenant rows"

# The whole dir, found by listing the store (deleted and renamed-away
# tenants included: the store holds them).
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/all" -parallelism 3 "$TEN" \
  >"$T/all.log" 2>&1 || fail "restore of the dir failed: $(cat "$T/all.log")"
if [ "$KIND" = file ]; then
  "$SLUICE" databases -config "$T/sluice.yml" | grep -q "$TEN/acme/app.db  *file  *$T/rep/acme/app.db" ||
    fail "databases: no replica path: $("$SLUICE" databases -config "$T/sluice.yml")"
fi
grep -q "restored 8, skipped 0, failed 0" "$T/all.log" ||
  fail "dir restore summary: $(tail -3 "$T/all.log")"
for r in acme/app.db beta.db new.db late.db gamma/deep/g.db new-name.db; do
  assert_same_db "$TEN/$r" "$T/all/$r"
done
assert_same_db "$T/gone-copy.db" "$T/all/gone.db"
[ -e "$T/all/old-name.db" ] || fail "renamed-away tenant not restored"
# Again into the same OUTDIR: every one is there already.
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/all" "$TEN" >"$T/all.log" 2>&1 ||
  fail "second dir restore failed: $(cat "$T/all.log")"
grep -q "restored 0, skipped 8, failed 0" "$T/all.log" ||
  fail "second dir restore summary: $(tail -3 "$T/all.log")"
if [ "$KIND" = file ]; then
  # One tenant's snapshots lost: that one fails, the others restore, exit 1.
  rm -rf "$T"/rep/beta.db/generations/*/snapshots
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/all2" "$TEN" >"$T/all.log" 2>&1 &&
    fail "dir restore with a failure exited 0"
  grep -q "restored 7, skipped 0, failed 1" "$T/all.log" ||
    fail "dir restore summary with a failure: $(tail -3 "$T/all.log")"
  grep "level=ERROR" "$T/all.log" | grep -q "db=$TEN/beta.db" ||
    fail "the failed tenant not named: $(grep level=ERROR "$T/all.log")"
  assert_same_db "$TEN/acme/app.db" "$T/all2/acme/app.db"
fi
echo "PASS"
