#!/usr/bin/env bash
# -timestamp restore of sluice's own replica gives the rows of that moment;
# a timestamp after the last upload gives the latest state.
source "$SRCDIR/tests/lib/common.sh"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 test -d "$T/replica/generations" || fail "no generation uploaded"
for i in 1 2 3; do
  "$SQLWRITER" -db "$T/app.db" -n 100 >/dev/null
  sleep 1.2 # uploaded within 100ms
  date -u +%Y-%m-%dT%H:%M:%S.%NZ >"$T/t$i"
  dump "$T/app.db" >"$T/t$i.sql"
  sleep 1.2 # the next batch uploads later
done
sluice_stop
for i in 1 2 3; do
  "$SLUICE" restore -config "$T/sluice.yml" -timestamp "$(cat "$T/t$i")" \
    -o "$T/r$i.db" "$T/app.db" >"$T/restore$i.log" 2>&1 ||
    { cat "$T/restore$i.log"; fail "restore at t$i failed"; }
  [ "$(sqlite3 "$T/r$i.db" 'PRAGMA integrity_check')" = ok ] ||
    fail "r$i: integrity_check failed"
  dump "$T/r$i.db" >"$T/r$i.sql"
  cmp -s "$T/t$i.sql" "$T/r$i.sql" ||
    fail "restore at t$i differs ($(rows "$T/r$i.db") rows)"
done
"$SLUICE" restore -config "$T/sluice.yml" -timestamp 2099-01-01T00:00:00Z \
  -o "$T/late.db" "$T/app.db" >/dev/null 2>&1 ||
  fail "restore with a timestamp after the last upload failed"
assert_same_db "$T/app.db" "$T/late.db"
echo PASS
