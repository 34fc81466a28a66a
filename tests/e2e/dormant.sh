#!/usr/bin/env bash
# Dormant databases (daemon.c, "dormancy"): a database of a dir entry that
# sleeps deep with every replica caught up is closed as at a clean stop and
# freed; only its path, a watch on its files and the entry's lease (parked)
# stay.  A change to its files starts it again from its clean-stop record.
# Every writer pattern is aimed at dormant databases: bursts larger than
# the autocheckpoint threshold ending in the application's own
# wal_checkpoint(TRUNCATE) (sqlite3 CLI), a long-lived connection whose
# TRUNCATEs all complete while sluice is stopped (SIGSTOP: the wake must
# resync, not start a generation), open-write-close per transaction, and
# several processes at once.  Dormant databases are deleted, renamed and
# created; SIGHUP reloads while they are dormant; a stop and a restart.
# At the end every database restores (integrity_check, the same rows), each
# has exactly one generation, the entry's lease kept one owner, and nothing
# was logged at ERROR.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/many_dbs.sh"
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"

N=6
mkdir -p "$T/dbs"
for i in $(seq 0 $((N - 1))); do
  sqlite3 "$T/dbs/t$i.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    INSERT INTO t(v) VALUES ('t$i first');" >/dev/null || fail "create t$i"
done
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$T/sluice.yml" <<YML
addr: 127.0.0.1:$PORT
deep-sleep-after: 1s
logging:
  level: debug
dbs:
  - dir: $T/dbs
    pattern: "*.db"
    watch: true
    replica:
      url: file://$T/rep
  # A database whose last upload waits for its interval after it went
  # deep: it goes dormant once that upload is done.
  - dir: $T/slow
    pattern: "*.db"
    watch: true
    replica:
      url: file://$T/rep-slow
      sync-interval: 3s
YML
mkdir -p "$T/slow"
sqlite3 "$T/slow/s0.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
  INSERT INTO t(v) VALUES ('s0 first');" >/dev/null || fail "create s0"

# dormant NAME...: each is dormant now (sluice status -json).
status_json() { curl -sf "http://127.0.0.1:$PORT/status.json"; }
dormant() {
  local js f
  js=$(status_json) || return 1
  for f in "$@"; do
    python3 -c '
import json, sys
d = json.loads(sys.argv[1])
ok = any(x["database"].endswith("/" + sys.argv[2]) and x["sleep"] == "dormant"
         for x in d["databases"])
sys.exit(0 if ok else 1)' "$js" "$f" || return 1
  done
}
names() { for i in "$@"; do printf 't%s.db ' "$i"; done; }
# fds the daemon holds under $T/dbs (database files, -wal, -shm).
db_fds() { find "/proc/$SLUICE_PID/fd" -lname "$T/dbs/*" 2>/dev/null | wc -l; }
metric() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
wakes_of() { grep -c "dormant: its files changed.*$1" "$T/sluice.log" || true; }
# burst DB: 4 transactions of 600 rows (~200 pages; autocheckpoint every
# 100 pages) by the sqlite3 CLI, then the application's TRUNCATE.
burst() {
  sqlite3 "$T/dbs/$1" >/dev/null <<SQL || fail "burst on $1"
PRAGMA busy_timeout=5000;
PRAGMA wal_autocheckpoint=100;
$(for _ in 1 2 3 4; do echo "BEGIN; WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<600) INSERT INTO t(v) SELECT hex(randomblob(150)) FROM c; COMMIT;"; done)
PRAGMA wal_checkpoint(TRUNCATE);
SQL
}
# open_write_close DB K: K transactions, each its own connection.
open_write_close() {
  python3 - "$T/dbs/$1" "$2" <<'PY' || fail "open-write-close on $1"
import sqlite3, sys
for k in range(int(sys.argv[2])):
    c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
    c.execute("INSERT INTO t(v) VALUES (?)", (f"owc {k}",))
    c.close()
PY
}
# long_lived DB: one connection, 5 transactions of 400 rows each followed
# by a TRUNCATE; prints how many TRUNCATEs completed.
long_lived() {
  python3 - "$T/dbs/$1" <<'PY' || fail "long-lived writer on $1"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
c.execute("PRAGMA wal_autocheckpoint=100")
done = 0
for k in range(5):
    c.execute("BEGIN")
    for _ in range(400):
        c.execute("INSERT INTO t(v) VALUES (hex(randomblob(150)))")
    c.execute("COMMIT")
    busy, _, _ = c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    done += busy == 0
print(done)
PY
}

sluice_start -config "$T/sluice.yml"
for i in $(seq 0 $((N - 1))); do
  wait_until 60 restores_now "t$i.db" || fail "t$i.db not replicated"
done
# shellcheck disable=SC2046
wait_until 60 dormant $(names $(seq 0 $((N - 1)))) s0.db || fail "not dormant: $(status_json)"
[ "$(db_fds)" -eq 0 ] || { ls -l "/proc/$SLUICE_PID/fd" >&2; fail "dormant databases hold fds"; }
[ "$(metric sluice_databases_dormant)" = "$((N + 1))" ] || fail "metrics: $(metric sluice_databases_dormant) dormant, want $((N + 1))"
"$SLUICE" status -config "$T/sluice.yml" | grep -q "t0\.db .* idle .*dormant" ||
  fail "status text does not show t0.db dormant: $("$SLUICE" status -config "$T/sluice.yml")"

# 0. Two commits in a row on a dormant database of the slow entry: the
# first is uploaded at once, the second waits for the 3 s interval, by
# which time the database sleeps deep (deep-sleep-after 1s): dormant once
# that upload is done.
wait_until 60 dormant s0.db || fail "s0.db not dormant: $(status_json)"
sqlite3 "$T/slow/s0.db" "INSERT INTO t(v) VALUES ('s0 one')"
sqlite3 "$T/slow/s0.db" "INSERT INTO t(v) VALUES ('s0 two')"
s0_restores() {
  rm -f "$T/chk-s0.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/chk-s0.db" "$T/slow/s0.db" >/dev/null 2>&1 &&
    [ "$(rows_of "$T/chk-s0.db")" = "$(rows_of "$T/slow/s0.db")" ]
}
wait_until 60 s0_restores || fail "s0.db: its two commits not replicated"
wait_until 30 dormant s0.db || fail "s0.db not dormant after its delayed upload: $(status_json)"

# 1. Bursts with the application's TRUNCATE, on every dormant database at
# once (several processes), twice.
for round in 1 2; do
  pids=()
  for i in $(seq 0 $((N - 1))); do burst "t$i.db" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || fail "a burst failed"; done
  for i in $(seq 0 $((N - 1))); do
    wait_until 60 restores_now "t$i.db" || fail "round $round: t$i.db not replicated after its burst"
  done
  # shellcheck disable=SC2046
  wait_until 60 dormant $(names $(seq 0 $((N - 1)))) || fail "round $round: not dormant again"
done
# The entry's lease stays held while every database is dormant (parked,
# renewed): lock.json is ours and not released.
grep -q '"released":true' "$T/rep/lock.json" && fail "the lease was released with every database dormant: $(cat "$T/rep/lock.json")"
grep -q "\"pid\":$SLUICE_PID," "$T/rep/lock.json" || fail "lock.json is not this process's: $(cat "$T/rep/lock.json")"
for i in $(seq 0 $((N - 1))); do
  [ "$(wakes_of "t$i.db")" -ge 2 ] || fail "t$i.db: woke $(wakes_of "t$i.db") times from dormancy (want >= 2)"
done

# 2. A long-lived connection whose TRUNCATEs complete while sluice is
# stopped: the frames exist only in the database file when it wakes.
resyncs0=$(grep -c "resync: " "$T/sluice.log" || true)
kill -STOP "$SLUICE_PID"
ok=$(long_lived t1.db)
kill -CONT "$SLUICE_PID"
[ "$ok" -gt 0 ] || fail "no TRUNCATE completed beside a dormant database"
wait_until 60 restores_now t1.db || fail "t1.db: long-lived writer's rows not replicated"
resynced() { [ "$(grep -c "resync: " "$T/sluice.log")" -gt "$resyncs0" ]; }
wait_until 30 resynced || fail "t1.db: its wake did not resync"

# 3. Open-write-close per transaction on a dormant database.
wait_until 60 dormant t2.db || fail "t2.db not dormant"
open_write_close t2.db 20
wait_until 60 restores_now t2.db || fail "t2.db: open-write-close rows not replicated"

# 4. Deleted, renamed, created while dormant.
wait_until 60 dormant t3.db t4.db || fail "t3.db, t4.db not dormant"
rm -f "$T/dbs/t3.db" "$T/dbs/t3.db-wal" "$T/dbs/t3.db-shm"
mv "$T/dbs/t4.db" "$T/dbs/t4r.db"
rm -f "$T/dbs/t4.db-wal" "$T/dbs/t4.db-shm"
sqlite3 "$T/dbs/t9.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
  INSERT INTO t(v) VALUES ('t9 created');" >/dev/null
wait_until 30 grep -q 'it was dormant: nothing to sync.*t3\.db' "$T/sluice.log" ||
  fail "t3.db: no line saying the deleted dormant database stopped"
gone() { ! status_json | grep -q "/$1\""; }
wait_until 30 gone t3.db || fail "t3.db (deleted while dormant) still listed"
wait_until 30 gone t4.db || fail "t4.db (renamed while dormant) still listed"
wait_until 60 restores_now t4r.db || fail "t4r.db (renamed) not replicated at its new path"
wait_until 60 restores_now t9.db || fail "t9.db (created) not replicated"
wait_until 60 dormant t4r.db t9.db || fail "t4r.db, t9.db not dormant"

# 5. SIGHUP with everything dormant; then a write.
kill -HUP "$SLUICE_PID"
wait_until 30 grep -q "configuration reloaded" "$T/sluice.log" || fail "no reload"
live=(t0.db t1.db t2.db t5.db t4r.db t9.db)
wait_until 60 dormant "${live[@]}" || fail "not dormant after the reload: $(status_json)"
sqlite3 "$T/dbs/t0.db" "INSERT INTO t(v) VALUES ('after the reload')"
wait_until 60 restores_now t0.db || fail "t0.db: written after the reload, not replicated"
wait_until 60 dormant t0.db || fail "t0.db not dormant again"

owner_of() { grep -o "lease on file://$T/rep held (owner [^,]*" "$1" | sed 's/.*owner //' | sort -u; }
sluice_stop
grep -q '"released":true' "$T/rep/lock.json" || fail "the stop did not release the lease: $(cat "$T/rep/lock.json")"
[ "$(owner_of "$T/sluice.log" | wc -l)" -eq 1 ] || fail "the lease changed owner: $(owner_of "$T/sluice.log")"
grep -q "AddressSanitizer\|runtime error" "$T/sluice.log" && fail "sanitizer report"
grep -E 'level=ERROR' "$T/sluice.log" && fail "errors in the log"

# 6. A restart: everything asleep from the start (the dormancy left a
# valid clean-stop record), no listing.
mv "$T/sluice.log" "$T/sluice.log.1"
sluice_start -config "$T/sluice.yml"
for f in "${live[@]}"; do
  wait_until 30 grep -q "asleep from the start.*$f" "$T/sluice.log" || fail "$f not asleep from the start"
done
grep -q "resuming replication" "$T/sluice.log" && fail "a dormant database listed the store at the restart"
sluice_stop

for f in "${live[@]}"; do
  base=${f%.db}
  gens=$(find "$T/rep/$f/generations" -mindepth 1 -maxdepth 1 -type d | wc -l)
  [ "$gens" -eq 1 ] || fail "$f: $gens generations (want 1)"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/out-$base.db" "$T/dbs/$f" >"$T/restore-$base.log" 2>&1 ||
    { cat "$T/restore-$base.log"; fail "restore $f"; }
  assert_same_db "$T/dbs/$f" "$T/out-$base.db"
done
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/out-s0.db" "$T/slow/s0.db" >"$T/restore-s0.log" 2>&1 ||
  { cat "$T/restore-s0.log"; fail "restore s0.db"; }
assert_same_db "$T/slow/s0.db" "$T/out-s0.db"
echo "ok: ${#live[@]} databases, $(grep -c "dormant: its files changed" "$T/sluice.log.1") wakes from dormancy, rows $(rows "$T/dbs/t1.db") in t1"
