#!/usr/bin/env bash
# `sluice replicate DB_PATH REPLICA_URL...` without a config file: two
# replicas, a writer, a graceful stop, both replicas restore to the source.
# And `make install`'s layout: `litestream` is a link to `sluice`.
source "$SRCDIR/tests/lib/common.sh"

"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start "$T/app.db" "file://$T/r1" "file://$T/r2"
wait_until 10 test -d "$T/r2/generations" || fail "replicas not written"
"$SQLWRITER" -db "$T/app.db" -n 2000 -rate 2000 >/dev/null
sluice_stop
for r in r1 r2; do
  "$SLUICE" restore -o "$T/$r.db" "file://$T/$r" >/dev/null 2>&1 ||
    fail "restore from $r failed"
  assert_same_db "$T/app.db" "$T/$r.db"
done
"$SLUICE" replicate "$T/app.db" >"$T/out" 2>&1 && fail "one positional accepted"
grep -q "must specify at least one replica URL" "$T/out" || fail "message"

cmake --install "$BUILDDIR" --prefix "$T/inst" >/dev/null || fail "cmake --install"
[ -x "$T/inst/bin/sluice" ] || fail "sluice not installed"
[ "$(readlink "$T/inst/bin/litestream")" = sluice ] || fail "no litestream link"
"$T/inst/bin/litestream" version | grep -q '^v' || fail "litestream link does not run"
echo PASS
