#!/usr/bin/env bash
# The writer-pattern matrix: every way real applications write SQLite, each
# replicated by the real sluice to a file replica, stopped, restored, every
# row compared with the source, and the generations counted.  One
# generation (with the WAL restarted several times inside it) except where
# continuity is really gone, and then the log says why.
#
#   writer_matrix.sh [CASE...|patterns|stops]   (default: patterns)
# writer_matrix_stops.sh runs the "stops" group.
source "$SRCDIR/tests/lib/common.sh"
SHORTWRITER=$BUILDDIR/shortwriter

# setup NAME: a database with one row and a config; sets D.
setup() {
  D=$T/$1
  mkdir -p "$D"
  cat >"$D/sluice.yml" <<YML
dbs:
  - path: $D/app.db
    checkpoint-interval: 100ms
    replicas:
      - url: file://$D/replica
        sync-interval: 100ms
YML
  "$SQLWRITER" -db "$D/app.db" -n 1 >/dev/null || fail "$1: create"
  : >"$T/sluice.log"
}

start() {
  sluice_start -config "$D/sluice.yml"
  wait_until 20 test -d "$D/replica/generations" || fail "$CASE: no generation"
}

# indexes: WAL indexes in the replica; wait_indexes N: until at least N.
indexes() {
  ls "$D"/replica/generations/*/wal 2>/dev/null | sed -n 's/_.*//p' | sort -u |
    wc -l
}
has_indexes() { [ "$(indexes)" -ge "$1" ]; }
# write_until_restart N: one sqlite3 CLI write at a time, quiet moments in
# between, until the replica holds N WAL indexes.
write_until_restart() {
  local i
  for i in $(seq 60); do
    has_indexes "$1" && return 0
    sqlite3 "$D/app.db" "INSERT INTO t(k, v) VALUES(-$i, 'quiet')" ||
      fail "$CASE: sqlite3 CLI write"
    sleep 0.3
  done
  fail "$CASE: the WAL did not restart (indexes: $(indexes), want >= $1)"
}
wait_indexes() {
  wait_until 20 has_indexes "$1" ||
    fail "$CASE: the WAL did not restart (indexes: $(indexes), want >= $1)"
}

# finish EXPECTED_GENS [REASON_REGEX]: stops sluice, restores, compares and
# checks the generation count and every new generation's logged reason.
finish() {
  local want=$1 why=${2:-} gens lines
  sluice_stop
  cat "$T/sluice.log" >>"$D/sluice.log"
  "$SLUICE" restore -config "$D/sluice.yml" -o "$D/restored.db" \
    "$D/app.db" >"$D/restore.log" 2>&1 ||
    { cat "$D/restore.log"; fail "$CASE: restore failed"; }
  assert_same_db "$D/app.db" "$D/restored.db"
  gens=$(ls "$D/replica/generations" | wc -l)
  lines=$(grep -c 'new generation' "$D/sluice.log")
  [ "$lines" -eq "$gens" ] ||
    fail "$CASE: $gens generations but $lines 'new generation' log lines"
  if [ "$gens" -ne "$want" ]; then
    grep 'new generation' "$D/sluice.log" >&2
    fail "$CASE: $gens generations, want $want"
  fi
  # The first one is the initial snapshot; any other names its cause.
  if [ "$want" -gt 1 ]; then
    grep 'new generation' "$D/sluice.log" | tail -n +2 | grep -Evq "$why" &&
      fail "$CASE: a new generation without the reason /$why/"
  fi
  echo "$CASE: $(rows "$D/restored.db") rows restored, $gens generation(s)," \
    "$(indexes) WAL indexes"
}

case_long_lived() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -duration 2 -rate 2000 -update-every 5 \
    -delete-every 7 >/dev/null || fail "$CASE: writer"
  write_until_restart 2
  finish 1
}

case_no_autocheckpoint() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -duration 2 -rate 2000 -autocheckpoint 0 \
    >/dev/null || fail "$CASE: writer"
  write_until_restart 2
  finish 1
}

# The sqlite3 CLI: one process, one connection, one write, exit.
case_sqlite3_cli() {
  setup "$CASE" && start
  local i
  for i in $(seq 8); do
    sqlite3 "$D/app.db" "INSERT INTO t(k, v) VALUES($i, hex(randomblob(50)))" ||
      fail "$CASE: sqlite3 CLI write $i"
    sleep 0.4 # quiet moments: sluice checkpoints, the next write restarts
  done
  wait_indexes 4
  finish 1
}

# Open, insert, close per transaction from C, at random short intervals.
case_short_connections() {
  setup "$CASE" && start
  "$SHORTWRITER" -db "$D/app.db" -n 40 -min-ms 0 -max-ms 200 -busy 5000 \
    >"$D/w.out" || fail "$CASE: writer"
  grep -q 'locked=0 ' "$D/w.out" || fail "$CASE: $(cat "$D/w.out")"
  wait_indexes 3
  finish 1
}

case_short_python() {
  python3 -c 'import sqlite3' 2>/dev/null || { echo "$CASE: no python3"; return; }
  setup "$CASE" && start
  python3 - "$D/app.db" <<'PY' || fail "$CASE: python writer"
import random, sqlite3, sys, time
for i in range(40):
    c = sqlite3.connect(sys.argv[1])
    c.execute("INSERT INTO t(k, v) VALUES(?, ?)", (i, "x" * 80))
    c.commit()
    c.close()
    time.sleep(random.uniform(0.0, 0.1))
PY
  finish 1
}

# Several processes at once: long-lived writers and short connections.
case_several_processes() {
  setup "$CASE" && start
  local p=() i
  for i in 1 2 3; do
    "$SQLWRITER" -db "$D/app.db" -duration 2 -rate 500 >/dev/null &
    p+=($!)
  done
  "$SHORTWRITER" -db "$D/app.db" -n 100 -max-ms 20 -busy 5000 >/dev/null &
  p+=($!)
  PIDS+=("${p[@]}")
  for i in "${p[@]}"; do wait "$i" || fail "$CASE: a writer failed"; done
  write_until_restart 2
  finish 1
}

case_checkpoint_modes() {
  local mode
  for mode in passive full restart truncate; do
    CASE=checkpoint_$mode
    setup "$CASE" && start
    "$SQLWRITER" -db "$D/app.db" -duration 1.5 -rate 2000 -autocheckpoint 0 \
      -checkpoint-every 150 -checkpoint-mode "$mode" -busy 100 >/dev/null ||
      fail "$CASE: writer"
    write_until_restart 2
    finish 1
  done
}

case_journal_size_limit() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -duration 2 -rate 2000 -autocheckpoint 200 \
    -journal-size-limit 0 >/dev/null || fail "$CASE: writer"
  write_until_restart 2
  finish 1
}

case_vacuum() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -duration 2 -rate 1000 -size 400 \
    -delete-every 2 -vacuum-every 400 >/dev/null || fail "$CASE: writer"
  finish 1
}

# The application's last connection closes while sluice is stopped: SQLite
# checkpoints and deletes the WAL.  sluice had copied everything, so the
# generation continues.
case_last_close_while_stopped() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -duration 1 -rate 1000 >/dev/null &
  local w=$!
  PIDS+=("$w")
  wait "$w" || fail "$CASE: writer"
  sluice_stop
  # sluice's connections were the last: nothing deleted yet.  Now an
  # application opens, reads, and closes last.
  sqlite3 "$D/app.db" 'SELECT count(*) FROM t' >/dev/null
  [ -e "$D/app.db-wal" ] && fail "$CASE: the last close did not delete the WAL"
  start
  # (Nothing written: asleep from the start, continuing when it wakes.)
  wait_until 20 grep -qE 'continuing generation|asleep from the start' "$T/sluice.log" ||
    fail "$CASE: no 'continuing generation' after the clean stop"
  "$SHORTWRITER" -db "$D/app.db" -n 30 -busy 5000 >/dev/null
  finish 1
}

# ... but if the application wrote after sluice stopped and then closed
# last, those commits exist only in the database file: WAL continuity is
# really gone, and the log says why; the page map finds the pages they
# changed and ships them in the same generation (a resync, core/resync.h).
case_write_after_stop() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -n 200 >/dev/null
  sluice_stop
  "$SQLWRITER" -db "$D/app.db" -n 200 >/dev/null # closes last: WAL deleted
  start
  wait_until 20 grep -q 'resync: wal header mismatch (database file written while sluice was stopped): [0-9]* of' "$T/sluice.log" ||
    fail "$CASE: no resync after writes while stopped"
  "$SHORTWRITER" -db "$D/app.db" -n 20 -busy 5000 >/dev/null
  finish 1
}

# sluice stopped and started again while the application keeps writing
# (without checkpointing while sluice is away).
case_restart_while_writing() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -duration 4 -rate 200 >"$D/w.out" &
  local w=$!
  PIDS+=("$w")
  sleep 1
  sluice_stop
  sleep 0.5
  start
  sleep 0.5
  sluice_stop
  start
  wait "$w" || fail "$CASE: writer"
  finish 1
}

# The database file deleted and created again under the same path: a new
# database, so a new generation, and the log says why.
case_deleted_recreated() {
  setup "$CASE" && start
  # 4 MB first: the replica is often still uploading the deleted file's
  # shadow when the engine starts the new generation (the race of a stale
  # request for another one, which this case's strict log count catches).
  "$SQLWRITER" -db "$D/app.db" -n 2000 -size 2000 >/dev/null
  rm -f "$D/app.db" "$D/app.db-wal" "$D/app.db-shm"
  "$SQLWRITER" -db "$D/app.db" -n 100 -size 30 >/dev/null
  wait_until 20 grep -q 'reason=database file' "$T/sluice.log" ||
    fail "$CASE: the new database file was not noticed"
  "$SHORTWRITER" -db "$D/app.db" -n 20 -busy 5000 >/dev/null
  finish 2 'reason=database file (deleted|replaced)'
}

# The same while sluice sleeps light (it keeps the old file's fds), and
# the new file's writer closes last and deletes its WAL before sluice runs
# again (SIGSTOP): the new file must still be noticed.
case_deleted_recreated_asleep() {
  setup "$CASE" && start
  "$SQLWRITER" -db "$D/app.db" -n 50 >/dev/null
  local f=/proc/$SLUICE_PID/fd
  light() {
    [ "$(find "$f" -lname "$D/app.db" | wc -l)$(find "$f" -lname "$D/app.db-wal" |
      wc -l)$(find "$f" -lname "$D/app.db-shm" | wc -l)" = 111 ]
  }
  wait_until 30 light || fail "$CASE: not in light sleep"
  kill -STOP "$SLUICE_PID"
  rm -f "$D/app.db" "$D/app.db-wal" "$D/app.db-shm"
  "$SQLWRITER" -db "$D/app.db" -n 100 -size 30 >/dev/null
  [ -e "$D/app.db-wal" ] && fail "$CASE: the new file's last close kept its WAL"
  kill -CONT "$SLUICE_PID"
  wait_until 20 grep -q 'reason=database file' "$T/sluice.log" ||
    fail "$CASE: the new database file was not noticed"
  "$SHORTWRITER" -db "$D/app.db" -n 20 -busy 5000 >/dev/null
  finish 2 'reason=database file (deleted|replaced)'
}

# kill -9 of sluice under short connections: the application's last close
# then checkpoints and deletes the WAL; nothing committed is lost.
case_kill9_short() {
  setup "$CASE" && start
  "$SHORTWRITER" -db "$D/app.db" -n 300 -max-ms 10 -busy 5000 >/dev/null &
  local w=$! _
  PIDS+=("$w")
  for _ in 1 2; do
    sleep 0.7
    kill -9 "$SLUICE_PID"
    wait "$SLUICE_PID" 2>/dev/null
    start
  done
  wait "$w" || fail "$CASE: writer"
  sluice_stop
  "$SLUICE" restore -config "$D/sluice.yml" -o "$D/restored.db" \
    "$D/app.db" >"$D/restore.log" 2>&1 || fail "$CASE: restore failed"
  assert_same_db "$D/app.db" "$D/restored.db"
  local gens
  gens=$(ls "$D/replica/generations" | wc -l)
  [ "$gens" -eq 1 ] || fail "$CASE: $gens generations after 2 kills"
  echo "$CASE: $(rows "$D/restored.db") rows restored, $gens generation(s)"
}

PATTERNS="long_lived no_autocheckpoint sqlite3_cli short_connections
short_python several_processes checkpoint_modes journal_size_limit vacuum"
STOPS="last_close_while_stopped write_after_stop restart_while_writing
deleted_recreated deleted_recreated_asleep kill9_short"
[ $# -gt 0 ] || set -- patterns
for arg in "$@"; do
  case $arg in
  patterns) list=$PATTERNS ;;
  stops) list=$STOPS ;;
  *) list=$arg ;;
  esac
  for CASE in $list; do "case_$CASE"; done
done
echo PASS
