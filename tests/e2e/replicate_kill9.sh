#!/usr/bin/env bash
# kill -9 of sluice in the middle of a write burst, restart, more writes:
# the restore equals the source.  And a kill -9 while the application
# keeps committing slowly (the WAL does not restart while sluice is down):
# the restart continues the same generation instead of starting a new one.
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

# 1. kill -9 during a burst at full speed.
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
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "burst: $(cat "$T/w1.out") then $(cat "$T/w2.out"); $(rows "$T/restored.db") rows"

# 2. kill -9 under a slow writer: same generation after the restart.
sluice_start -config "$T/sluice.yml"
sleep 1
gens_before=$(ls "$T/replica/generations" | sort)
"$SQLWRITER" -db "$T/app.db" -duration 3 -rate 20 >"$T/w3.out" &
WRITER=$!
PIDS+=("$WRITER")
sleep 1
kill -9 "$SLUICE_PID"
wait "$SLUICE_PID" 2>/dev/null
sleep 0.3
: >"$T/sluice.log"
sluice_start -config "$T/sluice.yml"
wait "$WRITER" || fail "slow writer failed"
sleep 0.5
sluice_stop
gens_after=$(ls "$T/replica/generations" | sort)
[ "$gens_before" = "$gens_after" ] ||
  fail "restart after kill -9 started a new generation: $gens_before -> $gens_after"
grep -q "resuming replication" "$T/sluice.log" || fail "no resume logged"
rm -f "$T/restored.db"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore 2 failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "PASS: slow writer $(cat "$T/w3.out"); generation kept"
