#!/usr/bin/env bash
# Idle databases (core/db.h, engine_sleep): a quiet, replicated database
# holds no SQLite connection and three fds (its -shm with the checkpoint
# lock, its database file with a shared lock, its -wal), then none at all
# once it has slept deep-sleep-after (an idle stub: its engine packed, rebuilt
# by the wake).  Bursts larger
# than the application's autocheckpoint threshold, each ending with the
# application's own wal_checkpoint(TRUNCATE), are written to sleeping
# databases: by short-lived connections (the sqlite3 CLI) and by a process
# that keeps its connection open (its TRUNCATE then completes while the
# database sleeps deep, so the wake must resync, not start a generation).
# At the end every database restores with every row, integrity_check ok,
# and each has exactly one generation.
source "$SRCDIR/tests/lib/common.sh"
N=${N:-4}
cat >"$T/sluice.yml" <<YML
deep-sleep-after: 3s
logging:
  level: debug
dbs:
YML
for i in $(seq 1 "$N"); do
  cat >>"$T/sluice.yml" <<YML
  - path: $T/db$i.db
    replicas:
      - url: file://$T/replica$i
        sync-interval: 100ms
YML
  sqlite3 "$T/db$i.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, b BLOB);
    INSERT INTO t(b) VALUES (randomblob(300));" >/dev/null || fail "create db$i"
done
sluice_start -config "$T/sluice.yml"

# fds NAME: descriptors the daemon holds on $T/NAME (exactly that file).
fds() { find "/proc/$SLUICE_PID/fd" -lname "$T/$1" 2>/dev/null | wc -l; }
# asleep I light|deep|any: exactly one fd on each of the database file,
# its -wal and its -shm (light: awake holds several on each, SQLite's
# connections' too), or none at all (deep).
asleep() {
  local d w s
  d=$(fds "db$1.db") w=$(fds "db$1.db-wal") s=$(fds "db$1.db-shm")
  case $2 in
  light) [ "$d$w$s" = 111 ] ;;
  deep) [ "$d$w$s" = 000 ] ;;
  any) [ "$d$w$s" = 111 ] || [ "$d$w$s" = 000 ] ;;
  esac
}
all_asleep() {
  local i
  for i in $(seq 1 "$N"); do asleep "$i" "$1" || return 1; done
}
# burst I: a short-lived connection writes 4 transactions of 600 rows of
# 300 bytes (~200 pages; autocheckpoint every 100 pages), then TRUNCATE.
burst() {
  sqlite3 "$T/db$1.db" >/dev/null <<SQL || fail "burst on db$1"
PRAGMA busy_timeout=5000;
PRAGMA wal_autocheckpoint=100;
$(for _ in 1 2 3 4; do echo "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<600) INSERT INTO t(b) SELECT randomblob(300) FROM c; COMMIT;"; done)
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}
# bursts: one burst on every database at once (waits for those only: the
# daemon is a child too).
bursts() {
  local i pids=()
  for i in $(seq 1 "$N"); do burst "$i" & pids+=($!); done
  for i in "${pids[@]}"; do wait "$i" || fail "a burst failed"; done
}

wait_until 60 all_asleep light || {
  ls -l "/proc/$SLUICE_PID/fd" >&2; fail "databases not in light sleep"
}

# 1. Light sleep: bursts from short-lived connections, several rounds.
for round in 1 2 3; do
  bursts
  wait_until 60 all_asleep light || fail "round $round: not asleep again"
done

# 2. Deep sleep: no fd at all, then the same bursts.
wait_until 60 all_asleep deep || { ls -l "/proc/$SLUICE_PID/fd" >&2; fail "no deep sleep"; }
# Each deep sleeper is an idle stub (its engine packed, core/db.c): the
# wake below rebuilds it.
stubs() { [ "$(grep -c "idle stub: engine packed" "$T/sluice.log")" -ge "$1" ]; }
wait_until 30 stubs "$N" || fail "deep sleepers not packed into idle stubs"
line0=$(wc -l <"$T/sluice.log")
bursts
wait_until 60 all_asleep light || fail "not asleep after the deep-sleep bursts"
for i in $(seq 1 "$N"); do
  tail -n "+$line0" "$T/sluice.log" | grep "idle stub: engine unpacked" |
    grep -q "db$i\.db" || fail "db$i: the wake did not rebuild it from its idle stub"
done

# 3. The same with sluice stopped (SIGSTOP) while it sleeps, so that the
# application's commits and checkpoints all happen before any wake, by a
# process that keeps its connection open (no last-close checkpoint).
# writer DB: 5 transactions of 400 rows, each followed by a TRUNCATE;
# prints how many TRUNCATEs completed.
writer() {
  python3 - "$1" <<'PY' || fail "long-lived writer on $1"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
c.execute("PRAGMA wal_autocheckpoint=100")
done = 0
for k in range(5):
    c.execute("BEGIN")
    for _ in range(400):
        c.execute("INSERT INTO t(b) VALUES (randomblob(300))")
    c.execute("COMMIT")
    busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    done += busy == 0
import os
print(done, os.stat(sys.argv[1] + "-wal").st_size)
PY
}
walsize() { stat -c %s "$T/db$1.db-wal" 2>/dev/null || echo 0; }
# 3a. Light sleep: the -shm's checkpoint lock, held by a stopped process,
# makes every TRUNCATE (and autocheckpoint) fail: the WAL keeps growing.
wait_until 60 asleep 1 light || fail "db1 not in light sleep"
resyncs0=$(grep -c "resync: " "$T/sluice.log")
kill -STOP "$SLUICE_PID"
read -r ok wal < <(writer "$T/db1.db")
# (after its close: the last connection could not checkpoint either)
wal_after=$(walsize 1)
kill -CONT "$SLUICE_PID"
[ "$ok" -eq 0 ] || fail "light sleep: $ok TRUNCATEs completed (want 0)"
[ "$wal" -gt $((100 * 4120)) ] && [ "$wal_after" = "$wal" ] ||
  fail "light sleep: the WAL was checkpointed ($wal bytes, then $wal_after)"
wait_until 60 asleep 1 light || fail "db1 not asleep after 3a"
# 3b. Deep sleep: nothing held, the TRUNCATEs complete, the frames exist
# only in the database file: the wake resyncs (same generation).
wait_until 60 asleep 2 deep || fail "db2 not in deep sleep"
stub2() { [ "$(grep "idle stub: engine packed" "$T/sluice.log" | grep -c "db2\.db")" -ge 2 ]; }
wait_until 30 stub2 || fail "db2 not an idle stub again"
kill -STOP "$SLUICE_PID"
read -r ok wal < <(writer "$T/db2.db")
kill -CONT "$SLUICE_PID"
[ "$ok" -gt 0 ] || fail "deep sleep: no TRUNCATE completed"
resynced() { [ "$(grep -c "resync: " "$T/sluice.log")" -gt "$resyncs0" ]; }
wait_until 60 resynced || fail "deep sleep: no resync after the TRUNCATEs"
wait_until 60 asleep 2 light || fail "db2 not asleep after 3b"

sluice_stop
grep -q "AddressSanitizer\|runtime error" "$T/sluice.log" && fail "sanitizer report"
for i in $(seq 1 "$N"); do
  gens=$(find "$T/replica$i/generations" -mindepth 1 -maxdepth 1 -type d | wc -l)
  [ "$gens" -eq 1 ] || fail "db$i: $gens generations (want 1)"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/r$i.db" "$T/db$i.db" \
    >"$T/restore$i.log" 2>&1 || { cat "$T/restore$i.log"; fail "restore db$i"; }
  assert_same_db "$T/db$i.db" "$T/r$i.db"
done
newgens=$(grep -c "new generation" "$T/sluice.log")
[ "$newgens" -eq "$N" ] || fail "$newgens new generations logged (want $N, one per db)"
wakes=$(grep -c "wake: continuing" "$T/sluice.log")
resyncs=$(grep -c "resync: " "$T/sluice.log")
echo "ok: $N databases, rows $(rows "$T/db1.db") in db1, $wakes wakes proven by the record, $resyncs resync lines"
