#!/usr/bin/env bash
# A writer commits continuously (inserts, updates, deletes) while sluice
# replicates to a file replica; after a graceful stop the restored database
# equals the source.  Run three times: with the application's own
# autocheckpoint, with autocheckpoint off, and with the application running
# wal_checkpoint(TRUNCATE) itself.
source "$SRCDIR/tests/lib/common.sh"

run_case() { # name writer-args...
  local name=$1
  shift
  local dir=$T/$name
  mkdir -p "$dir"
  cat >"$dir/sluice.yml" <<YML
dbs:
  - path: $dir/app.db
    replicas:
      - url: file://$dir/replica
        sync-interval: 100ms
YML
  "$SQLWRITER" -db "$dir/app.db" -n 1 >/dev/null
  sluice_start -config "$dir/sluice.yml"
  wait_until 10 test -d "$dir/replica/generations" ||
    fail "$name: no generation uploaded"
  "$SQLWRITER" -db "$dir/app.db" -duration 3 -rate 3000 -update-every 7 \
    -delete-every 11 "$@" >"$dir/writer.out" || fail "$name: writer failed"
  sluice_stop
  "$SLUICE" restore -config "$dir/sluice.yml" -o "$dir/restored.db" \
    "$dir/app.db" >"$dir/restore.log" 2>&1 ||
    { cat "$dir/restore.log"; fail "$name: restore failed"; }
  assert_same_db "$dir/app.db" "$dir/restored.db"
  echo "$name: $(cat "$dir/writer.out"), $(rows "$dir/restored.db") rows" \
    "restored, $(ls "$dir"/replica/generations/*/wal | wc -l) segments"
}

run_case autockpt
run_case noautockpt -autocheckpoint 0
run_case truncate -autocheckpoint 0 -truncate-every 200
echo PASS
