#!/usr/bin/env bash
# Wake from dormancy: commit -> WAL segment object lag for a database of a
# dir entry that is dormant before each commit (deep-sleep-after 1s, file
# replica, default sync-interval).  Each commit is a new connection's
# one-row INSERT, made once the metrics say the database is dormant.
# Prints p50 and max, then the daemon's "full start" and "new generation"
# line counts (every wake with a commit is a full start in the same
# generation: one new generation, the first).
# Usage: bench/dormant_lag.sh [COMMITS]   (default 10)
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
N=${1:-10}
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$T/dbs"
cat >"$T/sluice.yml" <<YML
addr: 127.0.0.1:$PORT
deep-sleep-after: ${DEEP:-1s}
logging:
  level: debug
dbs:
  - dir: $T/dbs
    pattern: "*.db"
    watch: true
    replica:
      url: file://$T/replica
YML
"$SQLWRITER" -db "$T/dbs/app.db" -n 10 >/dev/null
sluice_start -config "$T/sluice.yml"
have_wal() { ls "$T"/replica/app.db/generations/*/wal/*.wal.lz4 >/dev/null 2>&1; }
wait_until 20 have_wal || fail "no replica"
python3 - "$T/dbs/app.db" "$T/replica/app.db" "$N" "$PORT" <<'PY'
import glob, os, random, sqlite3, sys, time, urllib.request
db, rep, n, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def objects():
    return len(glob.glob(rep + "/generations/*/wal/*.wal.lz4"))
def dormant():
    m = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % port).read().decode()
    for l in m.splitlines():
        if l.startswith("sluice_databases_dormant "): return int(l.split()[1])
    return 0
lags = []; nd = 0
for i in range(n):
    t = time.monotonic()
    while time.monotonic() - t < 20 and not dormant(): time.sleep(0.05)
    nd += dormant()
    time.sleep(0.2)
    before = objects()
    c = sqlite3.connect(db, isolation_level=None); c.execute("PRAGMA busy_timeout=5000")
    c.execute("INSERT INTO t(k, v) VALUES (?, ?)", (i, "x" * 100)); c.close()
    t0 = time.monotonic()
    while objects() == before:
        if time.monotonic() - t0 > 10: sys.exit("no object 10 s after a commit")
        time.sleep(0.0005)
    lags.append(time.monotonic() - t0)
lags.sort()
ms = lambda x: "%.1f" % (x * 1000)
print("commits=%d dormant_before=%d lag_p50_ms=%s lag_max_ms=%s min=%s" % (n, nd, ms(lags[n // 2]), ms(lags[-1]), ms(lags[0])))
PY
echo "full_starts=$(grep -c "full start" "$T/sluice.log") new_generations=$(grep -c "new generation" "$T/sluice.log")"
sluice_stop
