#!/usr/bin/env bash
# Bad inputs under dir entries, each one clear line while the other
# databases keep replicating: an invalid pattern, a file matched by two
# entries (found live), a matching file that is not SQLite, a subdirectory
# without permission (sluice and the writers run as nobody: root reads
# anything), and the inotify watch limit reached (in a user namespace whose
# limit is lowered: the directories past it are polled at monitor-interval).
source "$SRCDIR/tests/lib/common.sh"
command -v setpriv >/dev/null || skip "setpriv not installed"

NOBODY=(setpriv --reuid=65534 --regid=65534 --clear-groups)
sq() { "${NOBODY[@]}" sqlite3 -cmd ".timeout 5000" "$@"; }
mkdb() { # mkdb PATH ROWS
  sq "$1" "PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);" >/dev/null ||
    fail "cannot create $1"
  add_rows "$1" "$2"
}
add_rows() {
  sq "$1" "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s
    WHERE i < $2) INSERT INTO t(v) SELECT randomblob(200) FROM s;" ||
    fail "cannot write $1"
}
replicated() { # replicated LOG PATH
  grep -F "db=$2 replica=" "$1" | grep -q 'msg="snapshot written'
}
count() { grep -c -- "$1" "$2"; }

# --- 1. as nobody: pattern, two entries, not SQLite, no permission ---
chmod 755 "$T"
A=$T/a
mkdir -p "$A/good/locked" "$A/good/shared" "$A/bad" "$A/rep"
chown -R 65534:65534 "$A"
mkdb "$A/good/t1.db" 10
mkdb "$A/good/locked/hidden.db" 3
mkdb "$A/bad/b.db" 3
printf 'just text, named like a database\n' >"$A/good/notsqlite.db"
chown 65534:65534 "$A/good/notsqlite.db"
chmod 000 "$A/good/locked"
cat >"$A/sluice.yml" <<YML
dbs:
  - dir: $A/good
    pattern: "*.db"
    recursive: true
    watch: true
    replica:
      path: $A/rep/good
      sync-interval: 100ms
  - dir: $A/bad
    pattern: "[abc"
    watch: true
    replica:
      path: $A/rep/bad
  - dir: $A/good/shared
    pattern: "s*.db"
    watch: true
    replica:
      path: $A/rep/shared
YML
chown 65534:65534 "$A/sluice.yml"
LOG=$A/sluice.log
"${NOBODY[@]}" "$SLUICE" replicate -config "$A/sluice.yml" >"$LOG" 2>&1 &
SLUICE_PID=$!
PIDS+=("$SLUICE_PID")
wait_until 20 replicated "$LOG" "$A/good/t1.db" || { cat "$LOG"; fail "t1.db not replicated"; }
( while [ ! -e "$T/stop" ]; do add_rows "$A/good/t1.db" 2; sleep 0.05; done ) &
WRITER=$!
PIDS+=("$WRITER")
# A tenant created now, and one matched by two entries.
mkdb "$A/good/t2.db" 5
mkdb "$A/good/shared/s1.db" 4
wait_until 20 replicated "$LOG" "$A/good/t2.db" || fail "t2.db not replicated"
wait_until 10 grep -q "database $A/good/shared/s1.db is matched by two entries (lines 2 and 14)" "$LOG" ||
  fail "no line for the file matched by two entries: $(grep s1.db "$LOG")"
add_rows "$A/good/shared/s1.db" 2 # its events must not repeat the line
add_rows "$A/good/t2.db" 5
sleep 1
touch "$T/stop"
wait "$WRITER"
kill -TERM "$SLUICE_PID"
wait "$SLUICE_PID" || fail "sluice exited $?"

[ "$(count "invalid pattern \[abc" "$LOG")" -eq 1 ] ||
  fail "invalid pattern: want one line: $(grep -i pattern "$LOG")"
[ "$(count "$A/good/notsqlite.db matches pattern \*.db but is not a SQLite database" "$LOG")" -eq 1 ] ||
  fail "non-SQLite file: want one line: $(grep notsqlite "$LOG")"
[ "$(count "cannot read $A/good/locked: Permission denied" "$LOG")" -eq 1 ] ||
  fail "subdirectory without permission: want one line: $(grep locked "$LOG")"
[ "$(count "matched by two entries" "$LOG")" -eq 1 ] || fail "two entries: more than one line"
replicated "$LOG" "$A/good/shared/s1.db" && fail "a file matched by two entries was replicated"
replicated "$LOG" "$A/bad/b.db" && fail "a database under an invalid pattern was replicated"
# For the commands (and a restart) it is the config error it is.
"$SLUICE" databases -config "$A/sluice.yml" >"$T/dup.out" 2>&1 &&
  fail "databases accepted a file matched by two entries"
grep -q "database $A/good/shared/s1.db is matched by two entries (lines 2 and 14)" "$T/dup.out" ||
  fail "databases: $(cat "$T/dup.out")"
rm -f "$A"/good/shared/s1.db*
for db in t1 t2; do
  "$SLUICE" restore -config "$A/sluice.yml" -o "$T/$db.db" "$A/good/$db.db" >"$T/r.log" 2>&1 ||
    fail "restore of $db failed: $(cat "$T/r.log")"
  assert_same_db "$A/good/$db.db" "$T/$db.db"
done
chmod 755 "$A/good/locked"

# --- 2. the inotify watch limit (a user namespace with a limit of 2) ---
command -v unshare >/dev/null || skip "unshare not installed"
unshare -U -r true 2>/dev/null || { echo "no user namespaces: watch-limit part skipped"; echo PASS; exit 0; }
W=$T/w
for d in d1 d2 d3 d4; do
  mkdir -p "$W/ten/$d"
  sqlite3 "$W/ten/$d/x.db" "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v);
    INSERT INTO t(v) VALUES ('$d');" >/dev/null
done
cat >"$W/sluice.yml" <<YML
dbs:
  - dir: $W/ten
    pattern: "*.db"
    recursive: true
    watch: true
    monitor-interval: 200ms
    replica:
      path: $W/rep
      sync-interval: 100ms
YML
LOG=$W/sluice.log
unshare -U -r sh -c "echo 2 >/proc/sys/user/max_inotify_watches && exec '$SLUICE' replicate -config '$W/sluice.yml'" >"$LOG" 2>&1 &
SLUICE_PID=$!
PIDS+=("$SLUICE_PID")
for d in d1 d2 d3 d4; do
  wait_until 20 replicated "$LOG" "$W/ten/$d/x.db" || fail "$d/x.db not replicated: $(tail -5 "$LOG")"
done
wait_until 10 grep -q "the inotify watch limit" "$LOG" || fail "no warning for the watch limit"
[ "$(count "the inotify watch limit" "$LOG")" -eq 1 ] || fail "watch limit: more than one line"
grep "the inotify watch limit" "$LOG" | grep -q "polling" || fail "watch limit line: $(grep "watch limit" "$LOG")"
# ... with the numbers: the limit, the 5 directories found, how many polled.
grep "the inotify watch limit" "$LOG" |
  grep -Eq "max_user_watches = 2\) is reached: 5 directories found under watched dirs, [0-4] watched, [1-5] polling every 200 ms" ||
  fail "watch limit line without the numbers: $(grep "watch limit" "$LOG")"
# New databases in polled directories are found too.
for d in d1 d2 d3 d4; do
  sqlite3 "$W/ten/$d/new.db" "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, v);
    INSERT INTO t(v) VALUES ('new $d');" >/dev/null
done
mkdir -p "$W/ten/d5"
sqlite3 "$W/ten/d5/y.db" "PRAGMA journal_mode=WAL; CREATE TABLE t(v); INSERT INTO t VALUES (5);" >/dev/null
for r in d1/new d2/new d3/new d4/new d5/y; do
  wait_until 20 replicated "$LOG" "$W/ten/$r.db" || fail "$r.db not replicated (polled dir)"
done
rm -f "$W/ten/d4/new.db" "$W/ten/d4/new.db-wal" "$W/ten/d4/new.db-shm"
wait_until 20 grep -q "database removed from replication\" db=$W/ten/d4/new.db" "$LOG" ||
  fail "database deleted in a polled dir not stopped"
kill -TERM "$SLUICE_PID"
wait "$SLUICE_PID" || fail "sluice exited $?"
grep -q "level=ERROR" "$LOG" && fail "errors: $(grep level=ERROR "$LOG" | head -3)"
echo "PASS"
