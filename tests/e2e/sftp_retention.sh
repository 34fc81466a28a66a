#!/usr/bin/env bash
# retention.sh's case on SFTP (a real OpenSSH server on 127.0.0.1):
# snapshot-interval creates snapshots on time; retention deletes snapshots
# older than the retention period and the WAL segments below the oldest
# snapshot kept, never the last snapshot; deleted generations and
# directories leave nothing behind; what is left restores to the source.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/sshd.sh"
sshd_start
trap 'sshd_stop; cleanup' EXIT

run_case() { # name url
  local name=$1 url=$2 dir=$T/$1
  mkdir -p "$dir"
  cat >"$dir/sluice.yml" <<YML
dbs:
  - path: $dir/app.db
    replicas:
      - url: $url
        key-path: $SSHD_KEY
        host-key-path: $SSHD_KNOWN_HOSTS
        sync-interval: 100ms
        snapshot-wal-factor: 0 # snapshots by time only here
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

mkdir -p "$T/remote"
run_case sftp "sftp://root@127.0.0.1:$SSHD_PORT$T/remote/app"
# Every WAL directory left holds segments at or above its generation's
# oldest snapshot, and no empty directory is left by the deletes.
[ -z "$(find "$T/remote" -mindepth 1 -type d -empty)" ] ||
  fail "empty directories left: $(find "$T/remote" -mindepth 1 -type d -empty)"
[ -z "$(find "$T/remote" -name '*.tmp')" ] || fail "temporary files left"
echo PASS
