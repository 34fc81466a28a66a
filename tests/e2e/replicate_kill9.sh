#!/usr/bin/env bash
# kill -9 of sluice in the middle of a write burst, restart, more writes:
# the restore equals the source, and the restart continued the same
# generation (the shadow WAL was intact).
source "$SRCDIR/tests/lib/common.sh"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 200ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 test -d "$T/replica/generations" || fail "no generation uploaded"
"$SQLWRITER" -db "$T/app.db" -duration 4 >"$T/w1.out" &
WRITER=$!
PIDS+=("$WRITER")
sleep 1.5
kill -9 "$SLUICE_PID"
wait "$SLUICE_PID" 2>/dev/null
sleep 0.5
sluice_start -config "$T/sluice.yml"
wait "$WRITER" || fail "writer failed"
"$SQLWRITER" -db "$T/app.db" -n 500 -rows 3 >"$T/w2.out"
sluice_stop
ngen=$(ls "$T/replica/generations" | wc -l)
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
[ "$ngen" -eq 1 ] ||
  fail "expected the restart to continue the generation, got $ngen generations"
grep -q "resuming replication" "$T/sluice.log" || fail "no resume logged"
echo "PASS: $(cat "$T/w1.out") then $(cat "$T/w2.out"); $(rows "$T/restored.db") rows"
