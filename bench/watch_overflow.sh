#!/usr/bin/env bash
# Lost file events at scale: N dormant databases in one `dir:` entry (file
# replica, deep-sleep-after 1s, on /dev/shm); the daemon is SIGSTOPped,
# more events than fs.inotify.max_queued_events are written beside them,
# then one commit to one of them, and the daemon is SIGCONTed.  Prints the
# time until that commit's WAL segment is in the replica, the daemon's CPU
# in the 3 s after, and how many databases are dormant then.
#   bench/watch_overflow.sh SLUICE_BINARY N
set -euo pipefail
SLUICE=$1; N=$2
T=$(mktemp -d /dev/shm/ovf.XXXXXX); trap 'kill $PID 2>/dev/null; rm -rf $T' EXIT
mkdir -p $T/dbs
python3 - $T/dbs $N <<'PY'
import sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    c = sqlite3.connect(f"{d}/t{i:06d}.db", isolation_level=None)
    c.execute("PRAGMA journal_mode=wal"); c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    c.execute("INSERT INTO t(v) VALUES ('x')"); c.close()
PY
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
printf 'addr: 127.0.0.1:%s\ndeep-sleep-after: 1s\ndbs:\n  - dir: %s/dbs\n    pattern: "*.db"\n    replica:\n      url: file://%s/rep\n' $PORT $T $T > $T/s.yml
$SLUICE replicate -config $T/s.yml > $T/log 2>&1 & PID=$!
dorm() { curl -sf http://127.0.0.1:$PORT/metrics | awk '$1=="sluice_databases_dormant"{print $2}'; }
until [ "$(dorm 2>/dev/null || echo 0)" = "$N" ]; do sleep 1; done
seg() { ls $T/rep/t000007.db/generations/*/wal/ | wc -l; }
s0=$(seg)
kill -STOP $PID
python3 - $T/dbs $(( $(cat /proc/sys/fs/inotify/max_queued_events) + 64 )) <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
fds = [os.open(os.path.join(d, x), os.O_WRONLY | os.O_CREAT | os.O_APPEND) for x in ("noise-a", "noise-b")]
for i in range(n): os.write(fds[i % 2], b"x")
PY
sqlite3 $T/dbs/t000007.db "INSERT INTO t(v) VALUES ('y')"
c0=$(awk '{print $14+$15}' /proc/$PID/stat)
t0=$(date +%s%N)
kill -CONT $PID
until [ "$(seg)" -gt "$s0" ]; do sleep 0.01; [ $(( $(date +%s%N) - t0 )) -lt 30000000000 ] || { echo "commit not replicated in 30 s"; break; }; done
t1=$(date +%s%N)
sleep 3
c1=$(awk '{print $14+$15}' /proc/$PID/stat)
echo "N=$N commit replicated after $(( (t1 - t0) / 1000000 )) ms; daemon CPU in the 3 s after: $(( (c1 - c0) * 10 )) ms; dormant after: $(dorm); overflow lines: $(grep -c 'events were lost' $T/log)"
