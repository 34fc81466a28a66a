#!/usr/bin/env bash
# Start straight into sleep.  16 databases under one `dir:` entry are
# replicated and stopped cleanly; while sluice is down, 6 are written, one
# writer pattern each: a plain commit (the last connection's close
# checkpoints and deletes the WAL), commits left in the WAL by a connection
# kept open, the application's TRUNCATE checkpoint, the file replaced, a
# commit with the database file's mtime put back, and commits left by a
# writer killed -9.  At the restart the 10 untouched ones sleep at once
# (no connection, no request) and the 6 written ones get a full start and
# ship their changes (0 new generations, except the replaced file).  Two
# databases asleep from the start are then written (a commit; a TRUNCATE
# checkpoint with the connection kept open) and must wake and ship.  After
# a clean stop every database restores with all its rows (integrity_check
# ok).  A last restart with nothing changed: every database asleep from
# the start, READY=1, and 0 store requests.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/many_dbs.sh"
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"

N=16
make_dbs "$T/dbs" "$N" 2 3 wal

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/sluice.yml" <<YML
addr: 127.0.0.1:$PORT
dbs:
  - dir: $T/dbs
    pattern: "*.db"
    replica:
      url: file://$T/rep
      sync-interval: 100ms
YML

cat >"$T/listen.py" <<'PY'
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
open(sys.argv[2] + ".up", "w").close()
while True:
    if "READY=1" in s.recv(4096).decode():
        open(sys.argv[2], "w").write("ready\n")
        break
PY
# start_notified: sluice with NOTIFY_SOCKET; waits for READY=1.
start_notified() {
  rm -f "$T/notify.sock" "$T/ready" "$T/ready.up"
  python3 "$T/listen.py" "$T/notify.sock" "$T/ready" &
  PIDS+=("$!")
  wait_until 10 test -e "$T/ready.up" || fail "notify listener did not start"
  NOTIFY_SOCKET=$T/notify.sock "$SLUICE" replicate -config "$T/sluice.yml" >>"$T/sluice.log" 2>&1 &
  SLUICE_PID=$!
  PIDS+=("$SLUICE_PID")
  wait_until 60 test -e "$T/ready" || fail "no READY=1 within 60 s"
}
requests() {
  curl -sf "http://127.0.0.1:$PORT/metrics" |
    awk '/^sluice_store_requests_total/ { n += $2 } END { print n + 0 }'
}


# --- 1. first run: everything replicated, clean stop ---
start_notified
for i in $(seq -w 0 $((N - 1))); do
  wait_until 60 restores_now "t$i.db" || fail "t$i.db not replicated"
done
sluice_stop

# --- 2. written while sluice is stopped ---
d=$T/dbs
# t08: a plain commit; the last connection's close checkpoints, deletes the WAL.
sqlite3 "$d/t08.db" "INSERT INTO t(v) VALUES ('t08 written while down')"
# t09: commits kept in the WAL by a connection that stays open.
# t10: commits, then the application's TRUNCATE checkpoint, connection open.
cat >"$T/hold.py" <<'PY'
import sqlite3, sys, time
path, mode = sys.argv[1], sys.argv[2]
c = sqlite3.connect(path, isolation_level=None)
c.execute("PRAGMA wal_autocheckpoint=0")
for k in range(3):
    c.execute("INSERT INTO t(v) VALUES (?)", (f"{path[-6:]} written while down {k}",))
if mode == "truncate":
    # (Busy when sluice, woken by the commits, holds the WAL by then; when
    # sluice is down, or still deep asleep, it truncates it.)
    r = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    print(f"{path[-6:]}: TRUNCATE checkpoint {'done' if r[0] == 0 else 'busy'}")
open(sys.argv[3], "w").close()
time.sleep(3600)
PY
python3 "$T/hold.py" "$d/t09.db" keep "$T/h09" &
H09=$!
PIDS+=("$H09")
python3 "$T/hold.py" "$d/t10.db" truncate "$T/h10" &
H10=$!
PIDS+=("$H10")
wait_until 10 test -e "$T/h09" -a -e "$T/h10" || fail "holding writers did not start"
[ "$(stat -c %s "$d/t09.db-wal")" -gt 0 ] || fail "t09's WAL is empty"
[ "$(stat -c %s "$d/t10.db-wal")" -eq 0 ] || fail "t10's WAL was not truncated"
# t11: the file replaced by another database.
python3 - "$T/new11.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA journal_mode=wal")
c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
c.executemany("INSERT INTO t(v) VALUES (?)", [(f"t11 replacement {k}",) for k in range(5)])
c.close()
PY
mv "$T/new11.db" "$d/t11.db"
# t12: a commit, then the database file's mtime put back (its ctime moves).
m12=$(stat -c %y "$d/t12.db")
sqlite3 "$d/t12.db" "UPDATE t SET v = 't12 changed while down' WHERE id = 2"
touch -m -d "$m12" "$d/t12.db"
[ "$(stat -c %y "$d/t12.db")" = "$m12" ] || fail "cannot put t12's mtime back"
# t13: commits left in the WAL by a writer killed before it closed.
python3 - "$d/t13.db" <<'PY'
import os, sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA wal_autocheckpoint=0")
c.execute("INSERT INTO t(v) VALUES ('t13 written while down')")
os._exit(0)
PY
[ "$(stat -c %s "$d/t13.db-wal")" -gt 0 ] || fail "t13's WAL is empty"

# --- 3. restart: 10 asleep at once, 6 full starts ---
mv "$T/sluice.log" "$T/sluice.log.1"
start_notified
asleep() { grep "asleep from the start" "$T/sluice.log" | grep -o 't[0-9][0-9]\.db' | sort -u | tr '\n' ' '; }
full() { grep "full start: " "$T/sluice.log" | grep -o 't[0-9][0-9]\.db' | sort -u | tr '\n' ' '; }
want_asleep="t00.db t01.db t02.db t03.db t04.db t05.db t06.db t07.db t14.db t15.db "
want_full="t08.db t09.db t10.db t11.db t12.db t13.db "
[ "$(asleep)" = "$want_asleep" ] || fail "asleep from the start: '$(asleep)', want '$want_asleep'"
[ "$(full)" = "$want_full" ] || fail "full starts: '$(full)', want '$want_full'"
grep "full start: " "$T/sluice.log" | sed 's/.*msg="//; s/" db=.*dbs\// /'
for f in t08 t09 t10 t11 t12 t13; do
  wait_until 60 restores_now "$f.db" || fail "$f.db: changes made while down not replicated"
done
# No listing of the store for the ones asleep.
if grep "resuming replication" "$T/sluice.log" | grep -qE 't0[0-7]\.db|t1[45]\.db'; then
  fail "a database asleep from the start listed the store"
fi
"$SLUICE" status -config "$T/sluice.yml" >"$T/status.txt" || fail "status failed"
awk '$1 ~ /t0[0-7]\.db$/ && $3 != "start" && $3 != "dormant" { bad = 1 } END { exit bad }' "$T/status.txt" ||
  fail "status does not show the sleepers asleep from the start: $(cat "$T/status.txt")"

# Writers of the asleep ones wake them: t00 a plain commit, t01 commits and
# a TRUNCATE checkpoint with the connection kept open.
sqlite3 "$d/t00.db" "INSERT INTO t(v) VALUES ('t00 written after the start')"
python3 "$T/hold.py" "$d/t01.db" truncate "$T/h01" &
H01=$!
PIDS+=("$H01")
wait_until 10 test -e "$T/h01" || fail "t01 writer did not start"
for f in t00 t01; do
  wait_until 60 restores_now "$f.db" || fail "$f.db: written while asleep from the start, not replicated"
done
kill -9 "$H09" "$H10" "$H01" 2>/dev/null
wait "$H09" "$H10" "$H01" 2>/dev/null
sluice_stop
grep -E 'level=ERROR' "$T/sluice.log" && fail "errors in the log"

# --- 4. everything restores, every row, generations ---
restore_dbs "restore" "$N" "$T/dbs" "$T/out" -config "$T/sluice.yml"
compare_dbs "restore" "$T/dbs" "$T/out" "$N" 2 --rep "$T/rep" \
  --rows '{0: 4, 1: 6, 8: 4, 9: 6, 10: 6, 11: 5, 13: 4}.get(i, 3)' \
  --gens '2 if i == 11 else 1'
[ "$(sqlite3 "$T/out/t12.db" "SELECT count(*) FROM t WHERE v = 't12 changed while down'")" -eq 1 ] ||
  fail "t12.db: the change made while down is not in the restore"

# --- 5. nothing changed: all asleep at once, no request ---
mv "$T/sluice.log" "$T/sluice.log.2"
start_notified
[ "$(grep -c "asleep from the start" "$T/sluice.log")" -eq "$N" ] ||
  fail "not all $N asleep from the start: $(grep -c "asleep from the start" "$T/sluice.log")"
# (Listings or a lease would follow the start at once; 1 s lets them show.)
sleep 1
[ "$(requests)" -eq 0 ] || fail "$(requests) store requests at a start with nothing changed"
sluice_stop
echo PASS
