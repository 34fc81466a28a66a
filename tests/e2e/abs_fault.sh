#!/usr/bin/env bash
# Azure Blob Storage stopped during a write burst and restarted: the test's
# own Azurite is stopped (SIGTERM: Azurite loses recent metadata on kill -9,
# see tests/tools/azurite.sh) and started again on the same port and storage
# ~3 s later while a writer commits; the replica reports the outage,
# recovers, and restores to the source.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/tools/azurite.sh"
command -v node >/dev/null || skip "node not installed"

for _ in 1 2 3 4 5; do
  AZ_PORT=$((20000 + RANDOM % 20000))
  az_up || break
done
AZ_ENDPOINT=http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT
[ -f "$SRCDIR/tests/servers/node_modules/azurite/dist/src/blob/main.js" ] ||
  skip "Azurite not installed (tests/servers)"
az_start_own "$T/azurite" "$AZ_PORT" ||
  fail "cannot start Azurite on port $AZ_PORT: $(tail -3 "$T/azurite/azurite.log" 2>/dev/null)"
C=fault
[ "$(az_container_create "$C")" = 201 ] || fail "cannot create container"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: abs://$AZ_ACCOUNT@$C/app
        account-key: $AZ_KEY
        endpoint: $AZ_ENDPOINT
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 sh -c "grep -q 'snapshot written' '$T/sluice.log'" ||
  fail "no snapshot uploaded"
"$SQLWRITER" -db "$T/app.db" -duration 10 -rate 1500 -update-every 7 \
  -delete-every 11 >"$T/writer.out" &
writer=$!
PIDS+=("$writer")
sleep 2
az_stop_own
echo "azurite stopped at $(date +%T.%N)"
# Longer than the HTTP layer's own retries (about 4 s), so the replica
# itself sees the outage.
sleep 6
az_start_own "$T/azurite" "$AZ_PORT" || fail "cannot restart Azurite"
echo "azurite restarted at $(date +%T.%N)"
wait "$writer" || fail "writer failed"

# Caught up when a restore equals the source (backoff is at most 30 s).
caught_up() {
  rm -f "$T/probe.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/probe.db" "$T/app.db" \
    >/dev/null 2>&1 &&
    [ "$(dump "$T/probe.db" | md5sum)" = "$(dump "$T/app.db" | md5sum)" ]
}
wait_until 45 caught_up || true
sluice_stop
grep -q 'replica sync error' "$T/sluice.log" ||
  fail "the outage was not noticed (no replica sync error logged)"
grep -q 'replica sync recovered' "$T/sluice.log" ||
  fail "no recovery logged after the restart"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "errors logged: $(grep -c 'replica sync error' "$T/sluice.log"), first:"
grep -m1 'replica sync error' "$T/sluice.log" | cut -c1-300
az_stop_own
echo "PASS: $(cat "$T/writer.out"), $(rows "$T/restored.db") rows"
