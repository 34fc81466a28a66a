#!/usr/bin/env bash
# Application impact: an application with no busy timeout at all (the
# sqlite3 CLI's default; a "database is locked" fails its transaction)
# doing 1,000 open-write-close transactions at random intervals never finds
# the database locked because of sluice, whose quiet-moment checkpoints
# (here after 10ms of quiet, racing the next write over and over) take no
# write lock.  The WAL stays bounded, every row is replicated, one
# generation.  The same application without sluice is the baseline.
source "$SRCDIR/tests/lib/common.sh"
SHORTWRITER=$BUILDDIR/shortwriter

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    checkpoint-interval: 10ms
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML

# Baseline: the same writes without sluice.
"$SHORTWRITER" -db "$T/base.db" -n 100 -max-ms 10 >"$T/base.out" ||
  fail "baseline writer"
grep -q ' locked=0 ' "$T/base.out" || fail "baseline: $(cat "$T/base.out")"

"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 20 test -d "$T/replica/generations" || fail "no generation"

"$SHORTWRITER" -db "$T/app.db" -n 1000 -max-ms 10 >"$T/w.out" 2>"$T/w.err" ||
  fail "writer: $(cat "$T/w.err")"
cat "$T/w.out"
grep -q ' locked=0 ' "$T/w.out" ||
  fail "the application saw 'database is locked': $(cat "$T/w.out"); $(sort "$T/w.err" | uniq -c)"
wal_max=$(sed -n 's/.*wal_max_bytes=\([0-9]*\).*/\1/p' "$T/w.out")
# Bounded: well under one min-checkpoint-page-count (1000 pages) of WAL.
[ "$wal_max" -lt $((1000 * 4120)) ] || fail "the WAL grew to $wal_max bytes"

# The sqlite3 CLI itself, no busy timeout: no write fails either.
fails=0
for i in $(seq 100); do
  sqlite3 "$T/app.db" "INSERT INTO t(k, v) VALUES($i, 'cli')" 2>>"$T/cli.err" ||
    fails=$((fails + 1))
  sleep "0.0$((RANDOM % 3))"
done
[ "$fails" -eq 0 ] || fail "$fails sqlite3 CLI writes failed: $(sort "$T/cli.err" | uniq -c)"

sluice_stop
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
gens=$(ls "$T/replica/generations" | wc -l)
[ "$gens" -eq 1 ] || fail "$gens generations"
indexes=$(ls "$T"/replica/generations/*/wal | sed -n 's/_.*//p' | sort -u | wc -l)
echo "baseline: $(cat "$T/base.out")"
echo "with sluice: $(cat "$T/w.out"); $(rows "$T/restored.db") rows restored," \
  "1 generation, $indexes WAL indexes"
echo PASS
