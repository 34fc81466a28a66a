#!/usr/bin/env bash
# A database deleted (or renamed away) while in light sleep gets a final
# sync of what was committed before: the wake on its -wal change and the
# delete arrive together, and once the files are gone only the
# descriptors sluice kept still reach the last commits (seen once in
# e2e/dir_watch: the rows written just before an `rm` were lost).  Made
# deterministic by stopping the daemon (SIGSTOP) across the write and the
# delete, so both events wait in its queue; then once more without the
# stop (the race as it comes), and a rename away.  Each restores to what
# it held when it was deleted, one generation; no fd is left on any.
source "$SRCDIR/tests/lib/common.sh"
TEN=$T/ten
mkdir -p "$TEN"
cat >"$T/sluice.yml" <<YML
dbs:
  - dir: $TEN
    pattern: "*.db"
    watch: true
    monitor-interval: 200ms
    replica:
      url: file://$T/rep
      sync-interval: 100ms
YML
NAMES="stopped raced renamed kept"
for n in $NAMES; do
  sqlite3 "$TEN/$n.db" "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
    INSERT INTO t(v) SELECT randomblob(300) FROM (SELECT 1 UNION ALL SELECT 2);" >/dev/null ||
    fail "create $n"
done
sluice_start -config "$T/sluice.yml"

fds() { find "/proc/$SLUICE_PID/fd" -lname "$1" 2>/dev/null | wc -l; }
# light N: one fd on each of N.db, N.db-wal, N.db-shm (awake: several).
light() {
  [ "$(fds "$TEN/$1.db")$(fds "$TEN/$1.db-wal")$(fds "$TEN/$1.db-shm")" = 111 ]
}
all_light() {
  local n
  for n in $NAMES; do light "$n" || return 1; done
}
wait_until 60 all_light || { ls -l "/proc/$SLUICE_PID/fd" >&2; fail "not in light sleep"; }

# write N ROWS: a short-lived connection commits, then a copy for the check.
write() {
  sqlite3 "$TEN/$1.db" "INSERT INTO t(v) SELECT randomblob(300) FROM
    (WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<$2) SELECT i FROM c);" ||
    fail "write $1"
  sqlite3 "$TEN/$1.db" ".backup $T/$1-copy.db" || fail "copy $1"
}
removed() { grep -q "database removed from replication\" db=$TEN/$1.db" "$T/sluice.log"; }

# 1. Written and deleted while the daemon cannot run.
kill -STOP "$SLUICE_PID"
write stopped 40
rm -f "$TEN/stopped.db" "$TEN/stopped.db-wal" "$TEN/stopped.db-shm"
kill -CONT "$SLUICE_PID"
wait_until 20 removed stopped || fail "stopped.db: not removed from replication"

# 2. Written and deleted at once, the daemon running.
write raced 40
rm -f "$TEN/raced.db" "$TEN/raced.db-wal" "$TEN/raced.db-shm"
wait_until 20 removed raced || fail "raced.db: not removed from replication"

# 3. Renamed away right after a write (with its -wal), the daemon stopped.
kill -STOP "$SLUICE_PID"
write renamed 25
mv "$TEN/renamed.db-wal" "$T/renamed-away.db-wal"
mv "$TEN/renamed.db" "$T/renamed-away.db"
rm -f "$TEN/renamed.db-shm"
kill -CONT "$SLUICE_PID"
wait_until 20 removed renamed || fail "renamed.db: not removed from replication"

# The one left alone still sleeps and wakes.
write kept 10
wait_until 30 light kept || fail "kept.db: not asleep again"
for n in stopped raced renamed; do
  for f in "$TEN/$n.db" "$TEN/$n.db-wal" "$TEN/$n.db-shm" "$T/renamed-away.db" \
    "$T/renamed-away.db-wal"; do
    [ "$(fds "$f")" -eq 0 ] || fail "an fd is still open on $f"
  done
done
sluice_stop
grep -q "level=ERROR" "$T/sluice.log" && fail "errors: $(grep level=ERROR "$T/sluice.log" | head -3)"

for n in $NAMES; do
  rm -f "$T/$n-restored.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/$n-restored.db" "$TEN/$n.db" \
    >"$T/restore.log" 2>&1 || fail "restore of $n failed: $(cat "$T/restore.log")"
  if [ "$n" = kept ]; then
    assert_same_db "$TEN/kept.db" "$T/kept-restored.db"
  else
    assert_same_db "$T/$n-copy.db" "$T/$n-restored.db"
  fi
  gens=$(find "$T/rep/$n.db/generations" -mindepth 1 -maxdepth 1 -type d | wc -l)
  [ "$gens" -eq 1 ] || fail "$n has $gens generations, want 1"
  echo "$n: $(rows "$T/$n-restored.db") rows restored"
done
echo PASS
