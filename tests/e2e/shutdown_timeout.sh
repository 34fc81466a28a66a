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
source "$SRCDIR/tests/lib/many_dbs.sh"

N=200
W=50
make_dbs "$T/dbs" "$N" 4 1

S3=""
MOTO=http://127.0.0.1:5000
if curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/"; then
  export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
  export AWS_CONFIG_FILE=/nonexistent
  B=sluice-shutdown-$$-$RANDOM
  s3_mb "$MOTO" "$B" ||
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
  restore_dbs "$1" "$N" "$T/dbs" "$T/out" -config "$T/sluice.yml" "${@:2}"
  compare_dbs "$1" "$T/dbs" "$T/out" "$N" 4 --rep "$T/rep" --gens 1
}
check_restores "file replica" -replica file
[ -z "$S3" ] || check_restores "s3 replica" -replica s3
echo PASS
