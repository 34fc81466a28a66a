#!/usr/bin/env bash
# A shutdown timeout with work in flight: 200 databases in one `dir:` entry,
# a file replica and (when moto runs) an S3 one, writers committing to 50
# of them, then SIGTERM with `shutdown-timeout: 1ms` (it fires while every
# database's final-sync job is on the pool, and uploads and HTTP requests
# are in flight), and rounds with 30ms and 300ms (other phases).  Each
# stop must end with exit 1 and the timeout line, or 0 if the stop beat
# it, never a crash; under ASan (the ASan suite runs this script on that
# build) no report, leaks included: nothing may be freed while a pool job
# or HTTP request still points into it (once seen: a segfault after a
# timeout at 10,000 databases), and nothing is uploaded after the timeout
# line.  Then a clean run uploads what the cut
# stops left in the shadow, and every database restores with every row,
# in 1 generation.
source "$SRCDIR/tests/lib/common.sh"

N=200
W=50
mkdir -p "$T/dbs"
python3 - "$T/dbs" "$N" <<'PY' || fail "cannot create the databases"
import sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    c = sqlite3.connect(f"{d}/t{i:04d}.db", isolation_level=None)
    c.execute("PRAGMA journal_mode=off")
    c.execute("BEGIN")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    c.execute("INSERT INTO t(v) VALUES (?)", (f"tenant {i} first",))
    c.execute("COMMIT")
    c.close()
PY

S3=""
MOTO=http://127.0.0.1:5000
if curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/"; then
  export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
  export AWS_CONFIG_FILE=/nonexistent
  B=sluice-shutdown-$$-$RANDOM
  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    aws --endpoint-url "$MOTO" s3api create-bucket --bucket "$B" >/dev/null ||
    fail "cannot create the moto bucket"
  S3="      - type: s3
        bucket: $B
        path: tenants
        endpoint: $MOTO
        region: us-east-1
        force-path-style: true
        access-key-id: S3RVER
        secret-access-key: S3RVER
        sync-interval: 50ms"
else
  echo "moto not running: file replica only"
fi

config() { # config SHUTDOWN_TIMEOUT
  cat >"$T/sluice.yml" <<YML
shutdown-timeout: $1
logging:
  level: debug
dbs:
  - dir: $T/dbs
    pattern: "*.db"
    replicas:
      - url: file://$T/rep
        sync-interval: 50ms
$S3
YML
}

# Commits to the first W databases, round robin, until $T/stop-writers
# exists; the number of commits so far in $T/commits.
writers() {
  python3 - "$T/dbs" "$W" "$T" <<'PY' &
import os, sqlite3, sys, time
d, w, t = sys.argv[1], int(sys.argv[2]), sys.argv[3]
k = int(open(f"{t}/commits").read()) if os.path.exists(f"{t}/commits") else 0
while not os.path.exists(f"{t}/stop-writers"):
    i = k % w
    c = sqlite3.connect(f"{d}/t{i:04d}.db", isolation_level=None, timeout=30)
    c.execute("INSERT INTO t(v) VALUES (?)", (f"tenant {i} commit {k}",))
    c.close()
    k += 1
    if k % 20 == 0:
        with open(f"{t}/commits.tmp", "w") as f:
            f.write(str(k))
        os.rename(f"{t}/commits.tmp", f"{t}/commits")
PY
  WRITER_PID=$!
  PIDS+=("$WRITER_PID")
}
commits() { cat "$T/commits" 2>/dev/null || echo 0; }
segments() { find "$T/rep" -name '*.wal.lz4' 2>/dev/null | wc -l; }

sanitizer_clean() {
  if grep -qE 'Sanitizer|runtime error:' "$T/sluice.log"; then
    grep -E -A30 'Sanitizer|runtime error:' "$T/sluice.log" | head -60 >&2
    fail "sanitizer report ($1)"
  fi
}

# The first start takes a snapshot of each (minutes under ASan on a loaded
# machine): done once, cleanly, before the rounds.
config 5m
sluice_start -config "$T/sluice.yml"
snapshotted() {
  [ "$(find "$T/rep" -name '*.snapshot.lz4' 2>/dev/null | wc -l)" -ge "$N" ]
}
end=$(($(date +%s) + 600))
until snapshotted; do
  [ "$(date +%s)" -lt "$end" ] || fail "not every database replicated in 600 s"
  sleep 1
done
sluice_stop
sanitizer_clean "first run"

round=0
for timeout in 1ms 30ms 300ms 1ms; do
  round=$((round + 1))
  config "$timeout"
  : >"$T/sluice.log"
  sluice_start -config "$T/sluice.yml"
  writers
  # Replicating, and the writers have committed since this start.
  base=$(segments)
  c0=$(commits)
  wait_until 300 sh -c "[ \$(find '$T/rep' -name '*.wal.lz4' | wc -l) -ge $((base + 50)) ]" ||
    fail "round $round: not replicating ($(segments) segments, $base before)"
  wait_until 120 sh -c "[ \$(cat '$T/commits' 2>/dev/null || echo 0) -ge $((c0 + 40)) ]" ||
    fail "round $round: the writers are stuck at $(commits) commits"
  t0=$(date +%s%N)
  kill -TERM "$SLUICE_PID"
  rc=0
  wait "$SLUICE_PID" || rc=$?
  ms=$((($(date +%s%N) - t0) / 1000000))
  touch "$T/stop-writers"
  wait "$WRITER_PID" || fail "the writers failed"
  rm -f "$T/stop-writers"
  sanitizer_clean "round $round"
  case $rc in
  1)
    grep -q 'shutdown timeout reached' "$T/sluice.log" ||
      fail "round $round: exit 1 without the timeout line"
    # Past the timeout nothing more is uploaded (the stop went on to its
    # end before, seconds past a 1 ms timeout): it stays in the shadow.
    late=$(sed -n '/shutdown timeout reached/,$p' "$T/sluice.log" |
      grep -cE 'wal segment written|snapshot written' || true)
    [ "$late" -eq 0 ] || fail "round $round: $late uploads after the timeout"
    ;;
  0) [ "$timeout" != 1ms ] || fail "round $round: a 1ms shutdown timeout did not fire" ;;
  *) fail "round $round: sluice exited $rc after a shutdown timeout of $timeout" ;;
  esac
  echo "round $round: shutdown-timeout $timeout: exit $rc in $ms ms"
  cp "$T/sluice.log" "$T/sluice.$round.log"
done
echo "$(commits) commits or more by the writers"

# A clean run: what the cut stops left in the shadow goes up now.
config 5m
: >"$T/sluice.log"
sluice_start -config "$T/sluice.yml"
wait_until 300 grep -q 'lease on .* held' "$T/sluice.log" ||
  fail "the clean run does not replicate"
sluice_stop
sanitizer_clean "clean run"
if grep -qE 'level=ERROR' "$T/sluice.log"; then
  grep -E 'level=ERROR' "$T/sluice.log" | head -5 >&2
  fail "errors in the clean run"
fi

check_restores() { # check_restores LABEL ARGS...: every database, every row
  local label=$1
  shift
  rm -rf "$T/out"
  "$SLUICE" restore -config "$T/sluice.yml" "$@" -o "$T/out" "$T/dbs" >"$T/restore.log" 2>&1 ||
    fail "$label: restore failed: $(tail -3 "$T/restore.log")"
  grep -q "restored $N, skipped 0, failed 0" "$T/restore.log" ||
    fail "$label: restore summary: $(tail -1 "$T/restore.log")"
  python3 - "$T/dbs" "$T/out" "$N" "$label" <<'PY' || fail "$label: restored databases differ"
import sqlite3, sys
src, out, n, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
bad = []
for i in range(n):
    f = f"t{i:04d}.db"
    r = sqlite3.connect(f"file:{out}/{f}?mode=ro", uri=True)
    ok = r.execute("PRAGMA integrity_check").fetchone()[0]
    got = r.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    r.close()
    s = sqlite3.connect(f"file:{src}/{f}?mode=ro", uri=True)
    want = s.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    s.close()
    if ok != "ok" or got != want:
        bad.append(f"{f}: integrity {ok}, {len(got)} rows of {len(want)}")
for b in bad[:10]:
    print(b, file=sys.stderr)
print(f"{label}: {n - len(bad)} of {n} restored with every row")
sys.exit(1 if bad else 0)
PY
}
check_restores "file replica" -replica file
[ -z "$S3" ] || check_restores "s3 replica" -replica s3
gens=$(for d in "$T"/rep/t*.db; do ls "$d/generations" | wc -l; done | sort -u | tr '\n' ' ')
[ "$gens" = "1 " ] || fail "generations per database: $gens (expected 1 each)"
echo PASS
