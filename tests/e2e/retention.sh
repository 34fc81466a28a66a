#!/usr/bin/env bash
# snapshot-interval creates snapshots on time; retention deletes exactly
# what it should: snapshots older than the retention period and the WAL
# segments below the oldest snapshot kept, never the last snapshot, never
# what a restore still needs (the newest snapshot at or before the cutoff
# stays, for a -timestamp just inside the window; snapshots at the same
# index replace each other, so the writer runs through several WAL
# indexes).  On the file backend and on S3 (moto, when
# available).
source "$SRCDIR/tests/lib/common.sh"

run_case() { # name url
  local name=$1 url=$2 dir=$T/$1
  mkdir -p "$dir"
  cat >"$dir/sluice.yml" <<YML
dbs:
  - path: $dir/app.db
    replicas:
      - url: $url
        sync-interval: 100ms
        snapshot-interval: 1s
        retention: 2s
        retention-check-interval: 500ms
YML
  "$SQLWRITER" -db "$dir/app.db" -n 10 >/dev/null
  : >"$T/sluice.log"
  sluice_start -config "$dir/sluice.yml"
  "$SQLWRITER" -db "$dir/app.db" -duration 10 -rate 300 -size 6000 >/dev/null ||
    fail "$name: writer failed"
  sleep 0.5
  # While running: what the replica holds.
  "$SLUICE" snapshots -config "$dir/sluice.yml" "$dir/app.db" >"$dir/snaps"
  "$SLUICE" wal -config "$dir/sluice.yml" "$dir/app.db" >"$dir/wal"
  local now
  now=$(date +%s)
  sluice_stop

  local written
  written=$(grep -c "snapshot written" "$T/sluice.log")
  [ "$written" -ge 5 ] ||
    fail "$name: $written snapshots in 10s with snapshot-interval 1s"
  grep -q "retention: .* deleted" "$T/sluice.log" ||
    fail "$name: retention deleted nothing"

  # Every snapshot listed is younger than retention + check interval + slack.
  local nsnap oldest_age min_snap min_wal
  nsnap=$(tail -n +2 "$dir/snaps" | wc -l)
  [ "$nsnap" -ge 1 ] || fail "$name: no snapshot left"
  [ "$nsnap" -le 5 ] || fail "$name: $nsnap snapshots kept, retention is 2s"
  oldest_age=$(tail -n +2 "$dir/snaps" | awk -v now="$now" '
    { cmd = "date -d " $5 " +%s"; cmd | getline t; close(cmd);
      if (now - t > max) max = now - t } END { print max + 0 }')
  [ "$oldest_age" -le 5 ] ||
    fail "$name: a snapshot $oldest_age s old survived a 2s retention"
  # No WAL segment below the oldest snapshot kept.
  min_snap=$(tail -n +2 "$dir/snaps" | awk 'NR == 1 || $3 < m { m = $3 } END { print m }')
  min_wal=$(tail -n +2 "$dir/wal" | awk 'NR == 1 || $3 < m { m = $3 } END { print m }')
  [ "$min_wal" -ge "$min_snap" ] ||
    fail "$name: WAL index $min_wal kept below the oldest snapshot $min_snap"

  # What is left restores to the source.
  "$SLUICE" restore -config "$dir/sluice.yml" -o "$dir/restored.db" \
    "$dir/app.db" >/dev/null 2>&1 || fail "$name: restore failed"
  assert_same_db "$dir/app.db" "$dir/restored.db"
  echo "$name: $written snapshots written, $nsnap kept (oldest ${oldest_age}s)," \
    "WAL from index $min_wal, snapshots from $min_snap"
}

run_case file "file://$T/file/replica"

if python3 -c 'import moto.server' 2>/dev/null; then
  need_servers
  if curl -s -o /dev/null --max-time 2 http://127.0.0.1:5000/moto-api/; then
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    bucket=sluice-ret-$$-$RANDOM
    curl -s -X PUT "http://127.0.0.1:5000/$bucket" >/dev/null
    run_case s3 "s3://$bucket.localhost:5000/app"
  fi
else
  echo "moto not available: S3 case skipped"
fi
echo PASS
