#!/usr/bin/env bash
# SIGHUP reloads the configuration: a database added is replicated, a
# database removed stops, while another keeps replicating unbroken (same
# generation, never restarted); a broken new config is rejected and the old
# one keeps running.
source "$SRCDIR/tests/lib/common.sh"

one_db() {
  cat <<YML
dbs:
  - path: $T/keep.db
    replicas:
      - url: file://$T/keep-replica
        sync-interval: 100ms
YML
}
two_dbs() {
  one_db
  cat <<YML
  - path: $T/added.db
    replicas:
      - url: file://$T/added-replica
        sync-interval: 100ms
YML
}

one_db >"$T/sluice.yml"
"$SQLWRITER" -db "$T/keep.db" -n 1 >/dev/null
"$SQLWRITER" -db "$T/added.db" -n 50 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 test -d "$T/keep-replica/generations" || fail "keep.db not replicated"
"$SQLWRITER" -db "$T/keep.db" -duration 6 -rate 500 >"$T/writer.out" &
WRITER=$!
PIDS+=("$WRITER")

# Add a database.
sleep 1
two_dbs >"$T/sluice.yml"
kill -HUP "$SLUICE_PID"
wait_until 10 test -d "$T/added-replica/generations" ||
  fail "database added by reload not replicated"
"$SQLWRITER" -db "$T/added.db" -n 30 >/dev/null

# A broken config is rejected; everything keeps running.
sleep 0.5
printf 'dbs:\n  - path: [\n' >"$T/sluice.yml"
kill -HUP "$SLUICE_PID"
wait_until 5 grep -q "reload rejected" "$T/sluice.log" || fail "broken config not reported"
kill -0 "$SLUICE_PID" || fail "daemon died on a broken config"

# Remove the added database: it gets a final sync and stops.
sleep 0.5
one_db >"$T/sluice.yml"
kill -HUP "$SLUICE_PID"
wait_until 10 grep -q "database removed from replication" "$T/sluice.log" ||
  fail "removed database still replicated"
"$SQLWRITER" -db "$T/added.db" -n 10 >/dev/null # not replicated any more

wait "$WRITER" || fail "writer failed"
sluice_stop

gens=$(ls "$T/keep-replica/generations" | wc -l)
[ "$gens" -eq 1 ] || fail "keep.db changed generation during reloads ($gens)"
[ "$(grep -c 'initialized db.*keep.db' "$T/sluice.log")" -eq 1 ] ||
  fail "keep.db was restarted by a reload"
"$SLUICE" restore -o "$T/keep-restored.db" "file://$T/keep-replica" \
  >/dev/null 2>&1 || fail "restore of keep.db failed"
assert_same_db "$T/keep.db" "$T/keep-restored.db"
"$SLUICE" restore -o "$T/added-restored.db" "file://$T/added-replica" \
  >/dev/null 2>&1 || fail "restore of added.db failed"
[ "$(rows "$T/added-restored.db")" -eq 80 ] ||
  fail "added.db replica holds $(rows "$T/added-restored.db") rows, want 80"
echo "PASS: $(cat "$T/writer.out")"
