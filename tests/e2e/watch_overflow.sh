#!/usr/bin/env bash
# Lost file events: more changes in a watched directory than the kernel's
# inotify queue holds (fs.inotify.max_queued_events) while sluice cannot
# read them (SIGSTOP), and among the dropped events a commit to a dormant
# database (no fd, known only by its watch) and one to a database asleep
# deep in a `path:` entry.  The queue overflow must reach sluice (libuv's
# file events drop it): one warning line, every watched database checked,
# both commits replicated, and only the dormant database written started
# again.  Before, they waited for the next write to the
# same database, however long that took.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/many_dbs.sh"
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"
max=$(cat /proc/sys/fs/inotify/max_queued_events 2>/dev/null || echo 0)
if [ "$max" -le 0 ] || [ "$max" -gt 1000000 ]; then skip "max_queued_events $max"; fi

N=4
mkdir -p "$T/dbs"
for i in $(seq 0 $((N - 1))); do
  sqlite3 "$T/dbs/t$i.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    INSERT INTO t(v) VALUES ('t$i first');" >/dev/null || fail "create t$i"
done
# A listed database in the same directory.
sqlite3 "$T/dbs/listed.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
  INSERT INTO t(v) VALUES ('listed first');" >/dev/null || fail "create listed"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/sluice.yml" <<YML
addr: 127.0.0.1:$PORT
deep-sleep-after: 1s
logging:
  level: debug
dbs:
  - path: $T/dbs/listed.db
    replicas:
      - url: file://$T/rep-listed
  - dir: $T/dbs
    pattern: "t*.db"
    watch: true
    replica:
      url: file://$T/rep
YML
sluice_start -config "$T/sluice.yml"

status_json() { curl -sf "http://127.0.0.1:$PORT/status.json"; }
sleeps() { # NAME HOW: NAME's sleep is HOW
  status_json | python3 -c '
import json, sys
d = json.load(sys.stdin)
sys.exit(0 if any(x["database"].endswith("/" + sys.argv[1]) and x["sleep"] == sys.argv[2]
                  for x in d["databases"]) else 1)' "$1" "$2"
}
listed_restores() {
  rm -f "$T/chk-listed.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/chk-listed.db" "$T/dbs/listed.db" >/dev/null 2>&1 &&
    [ "$(rows_of "$T/chk-listed.db")" = "$(rows_of "$T/dbs/listed.db")" ]
}
for i in $(seq 0 $((N - 1))); do
  wait_until 60 restores_now "t$i.db" || fail "t$i.db not replicated"
  wait_until 60 sleeps "t$i.db" dormant || fail "t$i.db not dormant: $(status_json)"
done
wait_until 60 listed_restores || fail "listed.db not replicated"
wait_until 60 sleeps listed.db deep || fail "listed.db not asleep deep: $(status_json)"

# (The checks above read the databases: each woke some times already.)
wakes() { grep -c "dormant: its files changed: starting again\" db=$T/dbs/$1" "$T/sluice.log"; }
declare -A wakes0
for i in $(seq 0 $((N - 1))); do wakes0[$i]=$(wakes "t$i.db"); done

# The flood, while sluice is stopped: alternating names (the kernel merges
# an event only into an identical one just before it), then the commits,
# whose events the full queue drops.
kill -STOP "$SLUICE_PID"
python3 - "$T/dbs" "$((max + 64))" <<'PY' || { kill -CONT "$SLUICE_PID"; fail "flood"; }
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
fds = [os.open(os.path.join(d, name), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
       for name in ("noise-a", "noise-b")]
for i in range(n):
    os.write(fds[i % 2], b"x")
for fd in fds:
    os.close(fd)
PY
sqlite3 "$T/dbs/t2.db" "INSERT INTO t(v) VALUES ('t2 during the flood')" || fail "write t2"
sqlite3 "$T/dbs/listed.db" "INSERT INTO t(v) VALUES ('listed during the flood')" || fail "write listed"
# What they hold now, read while the queue is still full: from here on the
# test must not open them (a reader's events would wake them).
want_t2=$(rows_of "$T/dbs/t2.db")
want_listed=$(rows_of "$T/dbs/listed.db")
kill -CONT "$SLUICE_PID"
# restored NAME SOURCE WANT: the replica restores to WANT's rows.
restored() {
  rm -f "$T/chk-$1"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/chk-$1" "$2" >/dev/null 2>&1 &&
    [ "$(rows_of "$T/chk-$1")" = "$3" ]
}

wait_until 30 grep -q "file change events were lost (the inotify queue of $max events overflowed" "$T/sluice.log" ||
  fail "no line saying events were lost"
wait_until 30 restored t2.db "$T/dbs/t2.db" "$want_t2" ||
  fail "t2.db: the commit whose event was lost is not replicated"
wait_until 30 restored listed.db "$T/dbs/listed.db" "$want_listed" ||
  fail "listed.db: the commit whose event was lost is not replicated"
for i in 0 1 3; do
  wait_until 30 sleeps "t$i.db" dormant || fail "t$i.db not dormant again: $(status_json)"
done
# Only the dormant database written starts again: the others' files are
# as they were when they went dormant (two stats each, no start).
[ "$(($(wakes t2.db) - wakes0[2]))" -eq 1 ] ||
  fail "t2.db: woke $(($(wakes t2.db) - wakes0[2])) times from dormancy after the flood (want 1)"
for i in 0 1 3; do
  [ "$(wakes "t$i.db")" -eq "${wakes0[$i]}" ] || fail "t$i.db: unchanged, but started again after the overflow"
done

sluice_stop
grep -E 'level=ERROR' "$T/sluice.log" && fail "errors in the log"
grep -q "AddressSanitizer\|runtime error" "$T/sluice.log" && fail "sanitizer report"
for f in t0.db t1.db t2.db t3.db; do
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/out-$f" "$T/dbs/$f" >"$T/restore.log" 2>&1 ||
    { cat "$T/restore.log"; fail "restore $f"; }
  assert_same_db "$T/dbs/$f" "$T/out-$f"
  gens=$(find "$T/rep/$f/generations" -mindepth 1 -maxdepth 1 -type d | wc -l)
  [ "$gens" -eq 1 ] || fail "$f: $gens generations (want 1)"
done
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/out-listed.db" "$T/dbs/listed.db" >"$T/restore.log" 2>&1 ||
  { cat "$T/restore.log"; fail "restore listed.db"; }
assert_same_db "$T/dbs/listed.db" "$T/out-listed.db"
echo "ok: a queue of $max events overflowed; both commits whose events were lost replicated"
