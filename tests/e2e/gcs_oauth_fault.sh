#!/usr/bin/env bash
# Google Cloud Storage with OAuth2, and the server going away during a write
# burst.  sluice reaches the storage emulator only through
# tests/tools/gcs_auth_server.py, which checks the RS256 JWT of a
# service-account key made here (GOOGLE_APPLICATION_CREDENTIALS) and lets
# only its own tokens through.  While a writer commits, that server is
# killed and started again ~3 s later on the same port, forgetting every
# token it issued: sluice sees connection failures, then a 401, fetches a
# new token, catches up, and the replica restores to the source.
source "$SRCDIR/tests/lib/common.sh"
GCS_PORT=${GCS_PORT:-9199}
[ "$GCS_PORT" = 9199 ] && need_servers
curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$GCS_PORT/storage/v1/b/x/o" ||
  skip "GCS emulator not reachable on 127.0.0.1:$GCS_PORT"
command -v python3 >/dev/null || skip "python3 not installed"
unset STORAGE_EMULATOR_HOST GCE_METADATA_HOST
export HOME=$T # no gcloud ADC file

EMAIL=sluice-e2e@sluice-test.iam.gserviceaccount.com
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/key.pem" 2>/dev/null &&
  openssl pkey -in "$T/key.pem" -pubout -out "$T/pub.pem" || skip "openssl cannot make keys"

AUTH_PORT=0
start_auth() {
  rm -f "$T/port"
  python3 "$SRCDIR/tests/tools/gcs_auth_server.py" --port "$AUTH_PORT" \
    --port-file "$T/port" --pubkey "$T/pub.pem" --email "$EMAIL" \
    --expires-in 60 --upstream "http://127.0.0.1:$GCS_PORT" --chunked \
    >>"$T/auth.log" 2>&1 &
  AUTH_PID=$!
  PIDS+=("$AUTH_PID")
  wait_until 10 test -s "$T/port" || fail "auth server did not start"
  AUTH_PORT=$(cat "$T/port")
}
stats() { curl -s "http://127.0.0.1:$AUTH_PORT/_stats"; }

start_auth
python3 - "$T/key.pem" "$EMAIL" "http://127.0.0.1:$AUTH_PORT/token" >"$T/sa.json" <<'PY'
import json, sys
print(json.dumps({"type": "service_account", "project_id": "sluice-test",
                  "private_key_id": "0123456789abcdef",
                  "private_key": open(sys.argv[1]).read(),
                  "client_email": sys.argv[2], "token_uri": sys.argv[3]}))
PY
export GOOGLE_APPLICATION_CREDENTIALS=$T/sa.json
B=sluice-e2e-oauth-$$-$RANDOM
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - type: gcs
        bucket: $B
        path: app
        endpoint: http://127.0.0.1:$AUTH_PORT
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 sh -c "grep -q 'snapshot written' '$T/sluice.log'" ||
  fail "no snapshot uploaded"
[ "$(stats | python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"])')" = 1 ] ||
  fail "expected one token: $(stats)"
"$SQLWRITER" -db "$T/app.db" -duration 10 -rate 1500 -update-every 7 \
  -delete-every 11 >"$T/writer.out" &
writer=$!
PIDS+=("$writer")
sleep 2
kill -9 "$AUTH_PID"
wait "$AUTH_PID" 2>/dev/null
echo "auth server killed at $(date +%T.%N)"
# Longer than the HTTP layer's own retries (about 4 s), so the replica
# itself sees the outage.
sleep 6
start_auth
echo "auth server restarted at $(date +%T.%N)"
wait "$writer" || fail "writer failed"

caught_up() {
  rm -f "$T/probe.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/probe.db" "$T/app.db" \
    >/dev/null 2>&1 &&
    [ "$(dump "$T/probe.db" | md5sum)" = "$(dump "$T/app.db" | md5sum)" ]
}
wait_until 45 caught_up || true
sluice_stop
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
grep -q 'replica sync error' "$T/sluice.log" ||
  fail "the outage was not noticed (no replica sync error logged)"
grep -q 'replica sync recovered' "$T/sluice.log" ||
  fail "no recovery logged after the restart"
stats >"$T/stats.json"
python3 - "$T/stats.json" <<'PY' || fail "auth server stats: $(cat "$T/stats.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["jwt_fail"] == [], s["jwt_fail"]
assert s["tokens"] >= 2, s["tokens"]  # the daemon's new one, and restores'
assert "unknown or revoked token" in s["rejected"], s["rejected"]
assert all(r == "unknown or revoked token" for r in s["rejected"]), s["rejected"]
PY
grep -q 'ya29\.' "$T/sluice.log" "$T/restore.log" && fail "a token was logged"
kill "$AUTH_PID"
wait "$AUTH_PID" 2>/dev/null
echo "errors logged: $(grep -c 'replica sync error' "$T/sluice.log"), e.g.:"
grep -m1 'replica sync error' "$T/sluice.log" | cut -c1-250
echo "PASS: $(cat "$T/writer.out"), $(rows "$T/restored.db") rows; auth server after restart: $(cat "$T/stats.json" | python3 -c 'import json,sys; s=json.load(sys.stdin); print("tokens", s["tokens"], "rejected", len(s["rejected"]))')"
