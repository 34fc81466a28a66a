#!/usr/bin/env bash
# A stop while a validation restore is reading an S3 replica: the restore is
# canceled (no "validation mismatch" for a restore the shutdown cut short),
# none of its requests is left in flight when the loop closes (under ASan a
# leaked request fails the exit code), and the daemon exits 0 each time.
# Restarted five times under a writer, each stop landing inside a
# validation; the replica then restores to the source, one generation.
. "$(dirname "$0")/../lib/common.sh"
need_servers
MOTO=http://127.0.0.1:5000
curl -s -o /dev/null --max-time 1 "$MOTO/moto-api/" || skip "moto not running"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent
B=sluice-val-$$-$RANDOM
s3_mb "$MOTO" "$B" ||
  fail "create moto bucket"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - type: s3
        bucket: $B
        path: app
        endpoint: $MOTO
        force-path-style: true
        access-key-id: S3RVER
        secret-access-key: S3RVER
        sync-interval: 100ms
        validation-interval: 200ms
        snapshot-wal-factor: 0
YML
# A few MB, so a validation restore takes long enough to be caught in.
"$SQLWRITER" -db "$T/app.db" -n 20000 >/dev/null
"$SQLWRITER" -db "$T/app.db" -duration 300 -rate 50 >"$T/writer.out" &
writer=$!
PIDS+=("$writer")

meta=$T/.app.db-litestream
caught=0
for round in 1 2 3 4 5; do
  sluice_start -config "$T/sluice.yml"
  # Stop as soon as a validation restore has its output open.
  if wait_until 60 sh -c "ls '$meta'/validate-*.db.tmp >/dev/null 2>&1"; then
    caught=$((caught + 1))
  fi
  sluice_stop
  grep -q "ERROR" "$T/sluice.log" && { tail -20 "$T/sluice.log"; fail "error in round $round"; }
  grep -q "validation mismatch" "$T/sluice.log" &&
    fail "round $round: a canceled validation was reported as a mismatch"
  ls "$meta"/validate-* 2>/dev/null && fail "round $round: validation files left behind"
done
[ "$caught" -ge 3 ] || fail "only $caught of 5 stops landed inside a validation restore"
canceled=$(grep -c "validation skipped: canceled by shutdown" "$T/sluice.log")
[ "$canceled" -ge 1 ] || fail "no stop canceled a validation restore in flight"

kill -TERM "$writer" 2>/dev/null
wait "$writer" 2>/dev/null
sluice_start -config "$T/sluice.yml"
caught_up() {
  rm -f "$T/r.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/r.db" "$T/app.db" >/dev/null 2>&1 &&
    [ "$(dump "$T/r.db" | md5sum)" = "$(dump "$T/app.db" | md5sum)" ]
}
wait_until 60 caught_up || fail "the replica never caught up with the source"
sluice_stop
assert_same_db "$T/app.db" "$T/r.db"
"$SLUICE" generations -config "$T/sluice.yml" "$T/app.db" >"$T/gens" 2>&1 ||
  { cat "$T/gens"; fail "generations"; }
gens=$(tail -n +2 "$T/gens" | awk '{print $2}' | sort -u | wc -l)
[ "$gens" -eq 1 ] || { cat "$T/gens"; fail "$gens generations"; }
echo "PASS: $caught of 5 stops inside a validation restore, $canceled canceled;" \
  "$(cat "$T/writer.out"); $(rows "$T/r.db") rows restored, 1 generation"
