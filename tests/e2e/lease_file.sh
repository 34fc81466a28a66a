#!/usr/bin/env bash
# The single-writer lease on a file replica (O_EXCL-style create with
# link(), replace under an flock'd lock.json.cas): the migration runbook
# run as written (tests/lib/lease_scenario.sh).
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/lease_scenario.sh"

shared_replica() { # name
  cat <<YML
      - name: $1
        path: $D/replica
YML
}
lease_scenario file
# Litestream 0.3's layout: nothing but generations/ and the lease files.
[ "$(cd "$D/replica" && ls | sort | tr '\n' ' ')" = "generations lock.json lock.json.cas " ] ||
  fail "unexpected files at the replica root: $(ls "$D/replica")"
echo PASS
