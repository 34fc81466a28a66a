#!/usr/bin/env bash
# The single-writer lease on Google Cloud Storage (uploads with
# ifGenerationMatch=0 / =GENERATION; the generation read from
# x-goog-generation).  The firebase-tools emulator ignores ifGenerationMatch;
# tests/servers/gcs-emu.js adds the check (ours), and this test first shows
# that it refuses a stale generation, then runs the migration runbook as
# written (tests/lib/lease_scenario.sh).
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/lease_scenario.sh"
GCS_PORT=${GCS_PORT:-9199}
[ "$GCS_PORT" = 9199 ] && need_servers
curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$GCS_PORT/storage/v1/b/x/o" ||
  skip "GCS emulator not reachable on 127.0.0.1:$GCS_PORT"
export STORAGE_EMULATOR_HOST=127.0.0.1:$GCS_PORT
unset GOOGLE_APPLICATION_CREDENTIALS
B=sluice-lease-$$-$RANDOM

up() { # generation body -> HTTP status
  curl -s -o "$T/up.json" -w '%{http_code}' -X POST -H 'Content-Type: application/octet-stream' \
    --data-binary "$2" "http://$STORAGE_EMULATOR_HOST/upload/storage/v1/b/$B/o?uploadType=media&name=probe&ifGenerationMatch=$1"
}
[ "$(up 0 a)" = 200 ] || fail "create-only upload refused"
gen=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['generation'])" "$T/up.json")
[ "$(up 0 b)" = 412 ] || fail "the emulator accepted ifGenerationMatch=0 on an existing object"
[ "$(up "$gen" c)" = 200 ] || fail "the emulator refused the current generation"
[ "$(up "$gen" d)" = 412 ] || fail "the emulator accepted a stale generation"

shared_replica() { # name
  cat <<YML
      - name: $1
        type: gcs
        bucket: $B
        path: app
YML
}
lease_scenario gcs
echo PASS
