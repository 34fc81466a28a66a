#!/usr/bin/env bash
# Retention on Azure Blob Storage (Azurite): with snapshots every second and a
# two-second retention, snapshots and WAL segments below the oldest retained
# snapshot are deleted from the container while a writer runs, and the
# replica still restores to the source.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/tools/azurite.sh"
[ "$AZ_PORT" = 10000 ] && need_servers
az_up || skip "Azurite not reachable on 127.0.0.1:$AZ_PORT"

C=sluice-e2e-ret-$$-$RANDOM
[ "$(az_container_create "$C")" = 201 ] || fail "cannot create container $C"
trap 'az_container_delete "$C" >/dev/null; cleanup' EXIT

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    min-checkpoint-page-count: 100
    replicas:
      - url: abs://$AZ_ACCOUNT@$C/app
        account-key: $AZ_KEY
        endpoint: $AZ_ENDPOINT
        sync-interval: 100ms
        snapshot-interval: 1s
        retention: 2s
        retention-check-interval: 500ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
"$SQLWRITER" -db "$T/app.db" -duration 7 -rate 1500 -update-every 5 \
  >"$T/writer.out" || fail "writer failed"
# Retention passes (every 500ms) delete what is below the oldest snapshot
# once the replica has uploaded past it: wait for one that leaves nothing
# below, then check what it left.
retained() {
  az_list "$C" app/generations/ >"$T/objects.txt" || return 1
  local oldest
  oldest=$(grep -E '/snapshots/' "$T/objects.txt" |
    sed -E 's|.*/([0-9a-f]{8})\.snapshot\.lz4$|\1|' | sort | head -1)
  [ -n "$oldest" ] && [ "$oldest" != 00000000 ] || return 1
  ! grep -E '/wal/' "$T/objects.txt" |
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
az_list "$C" app/generations/ >"$T/objects.txt"
sluice_stop
grep -q 'level=ERROR' "$T/sluice.log" && fail "errors while replicating"

gen_count=$(sed -E 's|^app/generations/([0-9a-f]{16})/.*|\1|' "$T/objects.txt" | sort -u | wc -l)
[ "$gen_count" = 1 ] || { cat "$T/objects.txt"; fail "expected one generation, got $gen_count"; }
snaps=$(grep -E '/snapshots/[0-9a-f]{8}\.snapshot\.lz4$' "$T/objects.txt" |
  sed -E 's|.*/([0-9a-f]{8})\.snapshot\.lz4$|\1|' | sort)
[ -n "$snaps" ] || { cat "$T/objects.txt"; fail "no snapshot left"; }
oldest=$(echo "$snaps" | head -1)
[ "$oldest" != 00000000 ] ||
  { cat "$T/objects.txt"; fail "snapshot 00000000 was never deleted"; }
# No WAL segment below the oldest retained snapshot remains.
while read -r idx; do
  [[ "$idx" < "$oldest" ]] && { cat "$T/objects.txt"; fail "segment of index $idx < $oldest kept"; }
done < <(grep -E '/wal/' "$T/objects.txt" | sed -E 's|.*/wal/([0-9a-f]{8})_.*|\1|' | sort -u)

"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "PASS: $(cat "$T/writer.out"); snapshots left: $(echo $snaps), $(grep -c /wal/ "$T/objects.txt") segments"
