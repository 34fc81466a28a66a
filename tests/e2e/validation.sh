#!/usr/bin/env bash
# validation-interval: under a continuous writer every validation passes
# (no false mismatch: the database copy and the restore are taken at the
# same exact position); after the replica is tampered with, validation
# reports a mismatch naming the position.
source "$SRCDIR/tests/lib/common.sh"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 200ms
        validation-interval: 700ms
        snapshot-wal-factor: 0 # segments stay above the snapshot: the tampered one is read
YML
"$SQLWRITER" -db "$T/app.db" -n 100 >/dev/null
sluice_start -config "$T/sluice.yml"
# The writer runs until three validations passed under it (however long a
# loaded machine takes), then stops.
"$SQLWRITER" -db "$T/app.db" -duration 120 -rate 400 -update-every 5 \
  >"$T/writer.out" &
writer=$!
wait_until 120 sh -c "[ \$(grep -c 'validation ok' '$T/sluice.log') -ge 3 ]"
kill -TERM "$writer" 2>/dev/null
wait "$writer" 2>/dev/null
ok=$(grep -c "validation ok" "$T/sluice.log")
bad=$(grep -c "validation mismatch" "$T/sluice.log")
[ "$ok" -ge 3 ] || fail "expected at least 3 validations under the writer, got $ok"
[ "$bad" -eq 0 ] || fail "false mismatch under a continuous writer"

# Validation never costs the replica a frame: with the writer done, the
# replica catches up to exactly the source (a round capped again at the
# validation position once there used to skip the rest of the WAL index).
caught_up() {
  rm -f "$T/r.db"
  "$SLUICE" restore -o "$T/r.db" "file://$T/replica" >/dev/null 2>&1 &&
    [ "$(dump "$T/r.db" | md5sum)" = "$(dump "$T/app.db" | md5sum)" ]
}
wait_until 30 caught_up || fail "the replica never caught up with the source"
assert_same_db "$T/app.db" "$T/r.db"

# Tamper with the replica: flip bytes in the middle of a WAL segment.
seg=$(ls "$T"/replica/generations/*/wal/*.wal.lz4 | sort | sed -n 2p)
size=$(stat -c %s "$seg")
printf 'XXXXXXXX' | dd of="$seg" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
"$SQLWRITER" -db "$T/app.db" -n 20 >/dev/null
wait_until 10 grep -q "validation mismatch" "$T/sluice.log" ||
  fail "tampered replica not detected"
grep "validation mismatch" "$T/sluice.log" | head -1 | grep -q "position [0-9a-f]\{16\}/" ||
  fail "mismatch does not name the position"
sluice_stop
echo "PASS: $ok validations ok under $(cat "$T/writer.out")"
