# shellcheck shell=bash
# The retention case shared by tests/e2e/retention.sh (file, S3) and
# sftp_retention.sh: snapshot-interval creates snapshots on time; retention
# deletes exactly what it should: snapshots older than the retention period
# and the WAL segments below the oldest snapshot kept, never the last
# snapshot, never what a restore still needs; what is left restores to the
# source.  Sourced after common.sh.

run_retention_case() { # name url [extra replica yaml lines]
  local name=$1 url=$2 extra=${3:-} dir=$T/$1
  mkdir -p "$dir"
  cat >"$dir/sluice.yml" <<YML
dbs:
  - path: $dir/app.db
    replicas:
      - url: $url
$extra
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
  # While running: what the replica holds.  At most one snapshot is older
  # than retention (2s) + retention-check-interval + slack: the newest one
  # at or before the cutoff stays, for a -timestamp just inside the window
  # (it can be much older: a snapshot per WAL index, and an index can last
  # long).  On a loaded machine a check can run late, so this is polled
  # until retention gets there (it must), with the time taken before each
  # listing.
  local now old_snaps=
  snaps_fresh() {
    now=$(date +%s)
    "$SLUICE" snapshots -config "$dir/sluice.yml" "$dir/app.db" >"$dir/snaps" ||
      return 1
    old_snaps=$(tail -n +2 "$dir/snaps" | awk -v now="$now" '
      { cmd = "date -d " $5 " +%s"; cmd | getline t; close(cmd);
        if (now - t > 4) n++ } END { print n + 0 }')
    [ "$old_snaps" -le 1 ]
  }
  wait_until 30 snaps_fresh ||
    fail "$name: $old_snaps snapshots older than 4 s survived a 2s retention"
  # Retention deletes once a newer snapshot is past the cutoff: on a loaded
  # machine the writer's 10 s may leave only a few snapshot indexes, so the
  # first deletion can come after it stopped (it must come).
  wait_until 30 grep -q "retention: .* deleted" "$T/sluice.log" ||
    fail "$name: retention deleted nothing"
  # No WAL segment below the oldest snapshot kept.  A pass deletes the
  # snapshots before the segments below them, so two listings can fall
  # between: polled until a pair shows the pass done.
  local min_snap min_wal
  wal_above_snaps() {
    "$SLUICE" snapshots -config "$dir/sluice.yml" "$dir/app.db" >"$dir/snaps" &&
      "$SLUICE" wal -config "$dir/sluice.yml" "$dir/app.db" >"$dir/wal" || return 1
    min_snap=$(tail -n +2 "$dir/snaps" | awk 'NR == 1 || $3 < m { m = $3 } END { print m }')
    min_wal=$(tail -n +2 "$dir/wal" | awk 'NR == 1 || $3 < m { m = $3 } END { print m }')
    # (none at all is right too once an idle database's fresh snapshot made
    # every segment below it go)
    [ -z "$min_wal" ] || [ "$min_wal" -ge "$min_snap" ]
  }
  wait_until 30 wal_above_snaps ||
    fail "$name: WAL index $min_wal kept below the oldest snapshot $min_snap"
  sluice_stop

  # One snapshot per WAL index at most (a second one would replace the
  # first and move its time: a -timestamp between the two would lose it),
  # and the writer's 10 s go through several indexes.
  local written distinct
  written=$(grep -c "snapshot written" "$T/sluice.log")
  distinct=$(grep -o "snapshot written: generation=[0-9a-f]* index=[0-9a-f]*" \
    "$T/sluice.log" | sort -u | wc -l)
  [ "$written" -ge 3 ] ||
    fail "$name: $written snapshots in 10s with snapshot-interval 1s"
  [ "$distinct" -eq "$written" ] ||
    fail "$name: $written snapshots written at only $distinct indexes"
  grep -q "retention: .* deleted" "$T/sluice.log" ||
    fail "$name: retention deleted nothing"

  local nsnap
  nsnap=$(tail -n +2 "$dir/snaps" | wc -l)
  [ "$nsnap" -ge 1 ] || fail "$name: no snapshot left"
  [ "$nsnap" -le 5 ] || fail "$name: $nsnap snapshots kept, retention is 2s"

  # What is left restores to the source.
  "$SLUICE" restore -config "$dir/sluice.yml" -o "$dir/restored.db" \
    "$dir/app.db" >/dev/null 2>&1 || fail "$name: restore failed"
  assert_same_db "$dir/app.db" "$dir/restored.db"
  echo "$name: $written snapshots written, $nsnap kept," \
    "WAL from index $min_wal, snapshots from $min_snap"
}
