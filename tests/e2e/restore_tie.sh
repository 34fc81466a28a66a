#!/usr/bin/env bash
# S3 and Azure list last-modified times to the second.  A generation that
# starts and ends within the second of the previous one's last upload (a
# quick failover: the old host stops, the new one restores, writes and
# stops) ties with it, and restore must still pick the newer one.  CI saw
# it in e2e/image: the container's writes were missing from the host's
# restore, which took the older generation of the tie.  Here the tie is
# made on a file replica by setting every object's mtime to one second.
source "$SRCDIR/tests/lib/common.sh"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML
logged() { grep -q "$1" "$T/sluice.log"; }
gens() { ls "$T/replica/generations" | wc -l; }

"$SQLWRITER" -db "$T/app.db" -n 20 -rows 5 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 30 logged "wal segments written" || fail "first generation: nothing uploaded"
sluice_stop
first=$(ls "$T/replica/generations")

# The local state gone: the next start must begin a second generation.
rm -rf "$T/.app.db-litestream"
"$SQLWRITER" -db "$T/app.db" -n 20 -rows 5 >/dev/null
: >"$T/sluice.log"
sluice_start -config "$T/sluice.yml"
wait_until 30 logged "new generation" || fail "no second generation"
"$SQLWRITER" -db "$T/app.db" -n 20 -rows 5 >/dev/null
sluice_stop
[ "$(gens)" -eq 2 ] || fail "$(gens) generations, want 2"
second=$(ls "$T/replica/generations" | grep -v "$first")

# Both generations' uploads in one second, as S3 would list them.
second_ts=$(date +%s)
find "$T/replica/generations" -type f -exec touch -d "@$second_ts" {} +
"$SLUICE" generations -config "$T/sluice.yml" "$T/app.db" >"$T/gens.out" 2>&1 ||
  { cat "$T/gens.out"; fail "generations"; }
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore"; }
grep -q "$second" "$T/restore.log" ||
  { cat "$T/restore.log"; fail "restore did not choose the newer generation $second (older: $first)"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "tie at $second_ts between $first and $second: restored $second, $(rows "$T/restored.db") rows"
echo PASS
