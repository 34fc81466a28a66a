#!/usr/bin/env bash
# Commit -> object lag: sporadic commits 0.5-1.5 s apart (uniform), one
# file replica with the default settings (sync-interval 1s).  After each
# commit, the time until a new WAL segment object is in the replica
# (polled every 0.5 ms).  Prints p50, p90 and max.
# Usage: bench/lag.sh [COMMITS]   (default 40, about 40 s)
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
N=${1:-40}
cat >"$T/sluice.yml" <<YML
logging:
  level: ${LOG_LEVEL:-info}
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
YML
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sluice_start -config "$T/sluice.yml"
have_wal() { ls "$T"/replica/generations/*/wal/*.wal.lz4 >/dev/null 2>&1; }
wait_until 20 have_wal || fail "no replica"
sleep 1
python3 - "$T/app.db" "$T/replica" "$N" <<'PY'
import glob, os, random, sqlite3, sys, time
db, rep, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
random.seed(12)
c = sqlite3.connect(db, isolation_level=None)
c.execute("PRAGMA busy_timeout=5000")
def objects():
    return len(glob.glob(rep + "/generations/*/wal/*.wal.lz4"))
lags = []
for i in range(n):
    time.sleep(random.uniform(0.5, 1.5))
    before = objects()
    c.execute("INSERT INTO t(k, v) VALUES (?, ?)", (i, "x" * 100))
    t0 = time.monotonic()
    while objects() == before:
        if time.monotonic() - t0 > 10:
            sys.exit("no object 10 s after a commit")
        time.sleep(0.0005)
    lags.append(time.monotonic() - t0)
    if os.environ.get("VERBOSE"): print("commit at %.3f lag %.1f ms" % (time.time() % 100, lags[-1] * 1000))
lags.sort()
ms = lambda x: "%.1f" % (x * 1000)
print("commits=%d lag_p50_ms=%s lag_p90_ms=%s lag_max_ms=%s" % (
    n, ms(lags[n // 2]), ms(lags[int(n * 0.9)]), ms(lags[-1])))
PY
sluice_stop
[ -n "${KEEP_LOG:-}" ] && cp "$T/sluice.log" "$KEEP_LOG"
