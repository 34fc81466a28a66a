#!/usr/bin/env bash
# A database freed while its replicas' validation restore and retention
# pass are still in flight (issue 11): removed by a reload (SIGHUP with the
# entry gone) and deleted under a watched dir, three times each, with
# `validation-interval` and `retention-check-interval` short on a file
# replica and on S3 (moto behind a proxy that delays every request, so a
# restore or a pass is in flight when the database goes).  Before the fix
# the callbacks of the restore and of the pass ran on the freed replica
# (ASan: heap-use-after-free in validate.c / housekeeping.c; a release
# build carried on with a corrupt heap).  Expected: the daemon survives
# every round with no sanitizer report, each removal is logged, the stop
# cancels what was in flight ("validation skipped: canceled" or the
# retention pass dropped), no validation file is left, and the database
# added back replicates and restores to the source (integrity, rows, one
# generation per round at most).
. "$(dirname "$0")/../lib/common.sh"
need_servers
MOTO=http://127.0.0.1:5000
curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/" || skip "moto not running"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent
B=sluice-inflight-$$-$RANDOM
s3_mb "$MOTO" "$B" ||
  fail "create moto bucket"
python3 "$SRCDIR/tests/tools/s3_fault_proxy.py" --upstream 127.0.0.1:5000 \
  --always slow --slow-ms 700 >"$T/proxy.port" 2>"$T/proxy.err" &
PIDS+=($!)
wait_until 10 grep -q PORT "$T/proxy.port" || fail "proxy did not start"
PROXY=http://127.0.0.1:$(awk '{print $2}' "$T/proxy.port")

s3_keys() { # s3_keys INDENT PATH: an S3 replica's keys, after its first
  sed "s/^/$1/" <<YML
bucket: $B
path: $2
endpoint: $PROXY
region: us-east-1
force-path-style: true
access-key-id: S3RVER
secret-access-key: S3RVER
sync-interval: 100ms
validation-interval: 300ms
retention: 2s
retention-check-interval: 100ms
YML
}
TEN=$T/ten
mkdir -p "$TEN"
write_config() { # write_config WITH_APP(0/1)
  {
    echo "dbs:"
    if [ "$1" = 1 ]; then
      cat <<YML
  - path: $T/app.db
    replicas:
      - url: file://$T/rep
        sync-interval: 100ms
        validation-interval: 200ms
        retention: 1s
        retention-check-interval: 100ms
      - type: s3
YML
      s3_keys "        " app
    fi
    cat <<YML
  - dir: $TEN
    pattern: "*.db"
    watch: true
    monitor-interval: 200ms
    replica:
      type: s3
YML
    s3_keys "      " ten
  } >"$T/sluice.yml.new"
  mv "$T/sluice.yml.new" "$T/sluice.yml"
}
write_config 1
"$SLUICE" config check -config "$T/sluice.yml" >"$T/check.out" 2>&1 ||
  { cat "$T/sluice.yml" "$T/check.out"; fail "config check"; }

# A few MB, so that a restore takes a while even from the file replica.
"$SQLWRITER" -db "$T/app.db" -n 20000 >/dev/null || fail "seed app.db"
"$SQLWRITER" -db "$T/app.db" -duration 600 -rate 40 >"$T/writer.out" &
writer=$!
PIDS+=("$writer")

sanitizer_clean() {
  ! grep -qE "AddressSanitizer|LeakSanitizer|ThreadSanitizer|runtime error:" "$T/sluice.log"
}
alive() {
  kill -0 "$SLUICE_PID" 2>/dev/null ||
    { sanitizer_clean || grep -m3 -A12 "Sanitizer" "$T/sluice.log" >&2; fail "sluice died: $1"; }
  sanitizer_clean || { grep -m3 -A12 "Sanitizer\|runtime error" "$T/sluice.log" >&2; fail "sanitizer report: $1"; }
}
in_flight() { # in_flight META: a validation restore has its output open
  ls "$1"/validate-*.db.tmp >/dev/null 2>&1
}
snapshot_written() { # snapshot_written PATH
  grep -F "db=$1 replica=" "$T/sluice.log" | grep -q 'msg="snapshot written'
}
removed() { # removed PATH N: the Nth "removed from replication" of PATH
  [ "$(grep -c "database removed from replication\" db=$1\$" "$T/sluice.log")" -ge "$2" ]
}

sluice_start -config "$T/sluice.yml"
caught=0
for round in 1 2 3; do
  # A reload removes app.db while a validation restore of it runs.
  wait_until 90 grep -q "db=$T/app.db replica=" "$T/sluice.log" || fail "app.db not started"
  wait_until 60 in_flight "$T/.app.db-litestream" && caught=$((caught + 1))
  write_config 0
  kill -HUP "$SLUICE_PID"
  wait_until 120 removed "$T/app.db" "$round" || { alive "round $round"; fail "app.db not removed (round $round)"; }
  alive "reload round $round"

  # A watched dir loses a database while its restore or pass is in flight.
  "$SQLWRITER" -db "$TEN/t$round.db" -n 20000 >/dev/null || fail "seed t$round"
  wait_until 60 snapshot_written "$TEN/t$round.db" ||
    { alive "t$round"; fail "t$round.db not replicated"; }
  wait_until 60 in_flight "$TEN/.t$round.db-litestream" && caught=$((caught + 1))
  rm -f "$TEN/t$round.db" "$TEN/t$round.db-wal" "$TEN/t$round.db-shm"
  wait_until 120 removed "$TEN/t$round.db" 1 || { alive "dir round $round"; fail "t$round.db not removed"; }
  alive "dir round $round"

  # Give the in-flight requests time to come back (onto freed memory,
  # before the fix), then add app.db back.
  sleep 3
  alive "after round $round"
  write_config 1
  kill -HUP "$SLUICE_PID"
done
echo "validation restores in flight at removal: $caught of 6"
[ "$caught" -ge 3 ] || fail "only $caught of 6 removals landed inside a validation restore"
wait_until 60 grep -q "validation ok\|validation skipped" "$T/sluice.log" || fail "no validation ran"

# The database added back replicates; a stop, then it restores.
kill -TERM "$writer" 2>/dev/null
wait "$writer" 2>/dev/null
sleep 1
alive "end"
sluice_stop
sanitizer_clean || fail "sanitizer report"
ls "$T"/.app.db-litestream/validate-* 2>/dev/null && fail "validation files left behind"
"$SLUICE" restore -o "$T/r.db" "file://$T/rep" >"$T/restore.out" 2>&1 ||
  { cat "$T/restore.out"; fail "restore"; }
assert_same_db "$T/app.db" "$T/r.db"
canceled=$(grep -c "validation skipped: canceled\|retention: pass dropped\|retention: .*canceled" "$T/sluice.log")
echo "PASS: $caught of 6 removals inside a validation restore, $canceled passes canceled;" \
  "$(rows "$T/r.db") rows restored"
