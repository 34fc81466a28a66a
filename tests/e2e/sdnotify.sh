#!/usr/bin/env bash
# systemd notify protocol, against a listener of our own on a unix datagram
# socket: READY=1 once the databases are open (the first sync has created
# the generation), WATCHDOG=1 at half of WATCHDOG_USEC, STOPPING=1 on
# SIGTERM; nothing when WATCHDOG_PID names another process; abstract
# socket names ("@...") work.
source "$SRCDIR/tests/lib/common.sh"
command -v python3 >/dev/null || skip "python3 not installed"

cat >"$T/listen.py" <<'PY'
# listen.py SOCKET OUT META: logs each notify message with a monotonic
# timestamp; READY=1 also records whether the generation file exists.
import os, socket, sys, time
path, out, meta = sys.argv[1:4]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind("\0" + path[1:] if path.startswith("@") else path)
with open(out, "a", buffering=1) as f:
    f.write("listening\n")
    while True:
        for line in s.recv(4096).decode().split("\n"):
            extra = ""
            if line == "READY=1":
                have = os.path.exists(os.path.join(meta, "generation"))
                extra = " generation=" + ("yes" if have else "no")
            f.write("%.3f %s%s\n" % (time.monotonic(), line, extra))
PY

DB=$T/app.db
META=$T/.app.db-litestream
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $DB
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML

# start_listener SOCKET OUT
start_listener() {
  python3 "$T/listen.py" "$1" "$2" "$META" &
  LISTENER=$!
  wait_until 10 grep -q listening "$2" || fail "listener did not start"
}

# run_case NAME SOCKET [ENV...]: runs sluice with NOTIFY_SOCKET=SOCKET and
# WATCHDOG_USEC=200000 plus ENV for 1.5 s, then stops it with SIGTERM.
run_case() {
  local name=$1 sock=$2
  shift 2
  rm -rf "$DB" "$DB-wal" "$DB-shm" "$META" "$T/replica"
  "$SQLWRITER" -db "$DB" -n 10 >/dev/null
  OUT=$T/$name.out
  start_listener "$sock" "$OUT"
  env NOTIFY_SOCKET="$sock" WATCHDOG_USEC=200000 "$@" \
    "$SLUICE" replicate -config "$T/sluice.yml" >>"$T/sluice.log" 2>&1 &
  SLUICE_PID=$!
  PIDS+=("$SLUICE_PID")
  wait_until 10 grep -q "READY=1" "$OUT" || fail "$name: no READY=1"
  sleep 1.5
  sluice_stop TERM
  wait_until 5 grep -q "STOPPING=1" "$OUT" || fail "$name: no STOPPING=1"
  kill "$LISTENER"
  wait "$LISTENER" 2>/dev/null
}

# Path socket, watchdog for this process.
run_case path "$T/notify.sock"
grep -q "READY=1 generation=yes" "$T/path.out" ||
  fail "READY=1 came before the database was open: $(grep READY "$T/path.out")"
grep -q "STATUS=" "$T/path.out" || fail "no STATUS= line"
n=$(grep -c " WATCHDOG=1$" "$T/path.out")
[ "$n" -ge 8 ] || fail "only $n WATCHDOG=1 in 1.5 s (want one per 100 ms)"
# Every ping within WATCHDOG_USEC (200 ms) of the previous one.
gap=$(awk '$2 == "WATCHDOG=1" { if (p) { d = $1 - p; if (d > m) m = d } p = $1 }
           END { printf "%.3f", m }' "$T/path.out")
awk -v g="$gap" 'BEGIN { exit !(g < 0.2) }' ||
  fail "watchdog gap of $gap s exceeds WATCHDOG_USEC"
# READY before STOPPING.  (Pings may precede READY=1 when the first sync
# is slow, and go on after STOPPING=1 while the final uploads run: both are
# fine for systemd.)
r=$(grep -n "READY=1" "$T/path.out" | head -1 | cut -d: -f1)
s=$(grep -n "STOPPING=1" "$T/path.out" | head -1 | cut -d: -f1)
[ "$r" -lt "$s" ] || fail "STOPPING=1 before READY=1"
echo "path socket: READY, $n watchdog pings (max gap ${gap}s), STOPPING"

# WATCHDOG_PID of another process: the watchdog is not ours to feed.
run_case otherpid "$T/notify2.sock" WATCHDOG_PID=1
grep -q " WATCHDOG=1" "$T/otherpid.out" &&
  fail "WATCHDOG=1 sent although WATCHDOG_PID names another process"
echo "WATCHDOG_PID=1: no pings"

# Abstract socket.
run_case abstract "@sluice-test-$$-$RANDOM"
grep -q " WATCHDOG=1" "$T/abstract.out" || fail "abstract: no WATCHDOG=1"
echo "abstract socket: ok"

# No NOTIFY_SOCKET at all: runs normally.
sluice_start -config "$T/sluice.yml"
wait_until 10 grep -q "initialized db" "$T/sluice.log" || fail "did not start"
sleep 0.3
sluice_stop TERM
echo PASS
