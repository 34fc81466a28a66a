#!/usr/bin/env bash
# Replication to Google Cloud Storage (the storage emulator, found through
# STORAGE_EMULATOR_HOST as Google's clients do).  One database, three
# replicas: a config entry (type gcs, bucket, path), a gcs:// URL and a gs://
# URL.  A writer commits while sluice replicates; after a graceful stop each
# replica restores to the source, through the config and through bare URLs;
# the listing commands read GCS.  A second database has snapshots every
# second and a two-second retention: old snapshots and segments disappear
# from the bucket.
source "$SRCDIR/tests/lib/common.sh"
GCS_PORT=${GCS_PORT:-9199}
[ "$GCS_PORT" = 9199 ] && need_servers
curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$GCS_PORT/storage/v1/b/x/o" ||
  skip "GCS emulator not reachable on 127.0.0.1:$GCS_PORT"
export STORAGE_EMULATOR_HOST=127.0.0.1:$GCS_PORT
unset GOOGLE_APPLICATION_CREDENTIALS
B=sluice-e2e-$$-$RANDOM

# gcs_list PREFIX: object names under PREFIX in $B.
gcs_list() {
  local tok="" r
  while :; do
    r=$(curl -s -G "http://$STORAGE_EMULATOR_HOST/storage/v1/b/$B/o" \
      --data-urlencode "prefix=$1" ${tok:+--data-urlencode "pageToken=$tok"})
    printf '%s' "$r" | python3 -c 'import json,sys
for i in json.load(sys.stdin).get("items", []): print(i["name"])'
    tok=$(printf '%s' "$r" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("nextPageToken", ""))')
    [ -n "$tok" ] || break
  done
}

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: keys
        type: gcs
        bucket: $B
        path: cfg/app
        sync-interval: 100ms
      - name: gcs
        url: gcs://$B/gcs/app
        sync-interval: 100ms
      - name: gs
        url: gs://$B/gs/app
        sync-interval: 100ms
  - path: $T/ret.db
    min-checkpoint-page-count: 100
    replicas:
      - url: gcs://$B/ret
        sync-interval: 100ms
        snapshot-interval: 1s
        retention: 2s
        retention-check-interval: 500ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
"$SQLWRITER" -db "$T/ret.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 sh -c "\"$SLUICE\" generations -config \"$T/sluice.yml\" \"$T/app.db\" | grep -q '^gs '" ||
  fail "no generation uploaded"
"$SQLWRITER" -db "$T/app.db" -duration 7 -rate 1500 -update-every 7 \
  -delete-every 11 >"$T/writer.out" &
w1=$!
"$SQLWRITER" -db "$T/ret.db" -duration 7 -rate 1500 -update-every 5 \
  >"$T/writer-ret.out" &
w2=$!
PIDS+=("$w1" "$w2")
wait "$w1" || fail "writer failed"
wait "$w2" || fail "retention writer failed"
# Retention passes (every 500ms) delete what is below the oldest snapshot
# once the replica has uploaded past it: wait for one that leaves nothing
# below, then check what it left.
retained() {
  gcs_list ret/generations/ >"$T/ret-objects.txt" || return 1
  local oldest
  oldest=$(grep -E '/snapshots/' "$T/ret-objects.txt" |
    sed -E 's|.*/([0-9a-f]{8})\.snapshot\.lz4$|\1|' | sort | head -1)
  [ -n "$oldest" ] && [ "$oldest" != 00000000 ] || return 1
  ! grep -E '/wal/' "$T/ret-objects.txt" |
    sed -E 's|.*/wal/([0-9a-f]{8})_.*|\1|' | awk -v o="$oldest" '$1 < o' | grep -q .
}
# Snapshot-interval goes on until the database stops changing: the state
# must hold across a second with no new snapshot.
settled() {
  local n
  n=$(grep -c 'snapshot written' "$T/sluice.log")
  retained && sleep 1 && retained &&
    [ "$(grep -c 'snapshot written' "$T/sluice.log")" = "$n" ]
}
wait_until 30 settled || true # the checks below say what is wrong
gcs_list ret/generations/ >"$T/ret-objects.txt"
sluice_stop
grep -q 'level=ERROR' "$T/sluice.log" && fail "errors while replicating"

"$SLUICE" generations -config "$T/sluice.yml" "$T/app.db" >"$T/gens.txt" ||
  fail "generations failed"
[ "$(grep -c '^keys \|^gcs \|^gs ' "$T/gens.txt")" = 3 ] ||
  { cat "$T/gens.txt"; fail "expected one generation per replica"; }
"$SLUICE" wal -config "$T/sluice.yml" "$T/app.db" | grep -q '^gs ' ||
  fail "no WAL segments listed"
gcs_list cfg/app/generations/ | grep -Eq '^cfg/app/generations/[0-9a-f]{16}/snapshots/[0-9a-f]{8}\.snapshot\.lz4$' ||
  fail "no snapshot under cfg/app/generations/"

for r in keys gcs gs; do
  "$SLUICE" restore -config "$T/sluice.yml" -replica $r -o "$T/$r.db" "$T/app.db" \
    >"$T/restore-$r.log" 2>&1 || { cat "$T/restore-$r.log"; fail "restore from $r failed"; }
  assert_same_db "$T/app.db" "$T/$r.db"
done
"$SLUICE" restore -o "$T/url.db" "gs://$B/cfg/app" >"$T/r-url.log" 2>&1 ||
  { cat "$T/r-url.log"; fail "restore from a gs:// URL failed"; }
assert_same_db "$T/app.db" "$T/url.db"
"$SLUICE" snapshots "gcs://$B/gcs/app" | grep -Eq '[0-9a-f]{16}' ||
  fail "snapshots of a URL"

# Retention: one generation, snapshot 0 gone, no segment below the oldest
# snapshot, and the replica still restores.
snaps=$(grep -E '/snapshots/' "$T/ret-objects.txt" | sed -E 's|.*/([0-9a-f]{8})\.snapshot\.lz4$|\1|' | sort)
oldest=$(echo "$snaps" | head -1)
[ -n "$oldest" ] && [ "$oldest" != 00000000 ] ||
  { cat "$T/ret-objects.txt"; fail "retention: snapshots left: $snaps"; }
while read -r idx; do
  [[ "$idx" < "$oldest" ]] && { cat "$T/ret-objects.txt"; fail "segment of index $idx < $oldest kept"; }
done < <(grep -E '/wal/' "$T/ret-objects.txt" | sed -E 's|.*/wal/([0-9a-f]{8})_.*|\1|' | sort -u)
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/ret-restored.db" "$T/ret.db" \
  >"$T/restore-ret.log" 2>&1 || { cat "$T/restore-ret.log"; fail "restore of ret.db failed"; }
assert_same_db "$T/ret.db" "$T/ret-restored.db"
echo "PASS: $(cat "$T/writer.out"), $(rows "$T/gs.db") rows; retention kept snapshots $(echo $snaps)"
