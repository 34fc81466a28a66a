#!/usr/bin/env bash
# The single-writer lease on Azure Blob Storage (Azurite: Put Blob with
# If-None-Match: * and If-Match: ETag): the migration runbook run as
# written (tests/lib/lease_scenario.sh).
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/tools/azurite.sh"
source "$SRCDIR/tests/lib/lease_scenario.sh"
[ "$AZ_PORT" = 10000 ] && need_servers
az_up || skip "Azurite not reachable on 127.0.0.1:$AZ_PORT"
C=sluice-lease-$$-$RANDOM
[ "$(az_container_create "$C")" = 201 ] || fail "cannot create container $C"
trap 'az_container_delete "$C" >/dev/null; cleanup' EXIT

shared_replica() { # name
  cat <<YML
      - name: $1
        type: abs
        account-name: $AZ_ACCOUNT
        account-key: $AZ_KEY
        bucket: $C
        path: app
        endpoint: $AZ_ENDPOINT
YML
}
lease_scenario abs
echo PASS
