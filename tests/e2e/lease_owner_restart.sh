#!/usr/bin/env bash
# A dir entry's one lease keeps its owner id across a restart even when
# the first database (in path order) is new.  Four databases t0..t3 are
# replicated and stopped cleanly; while sluice is down a tenant a.db is
# created, which sorts first.  At the restart the lease is taken again as
# our own (the owner id of the first run, found in t0's meta directory),
# so the four unchanged databases stay asleep from the start and list
# nothing; before, a.db's meta directory had no owner id, the lease was
# "taken over" from the first run's owner, and every sleeper listed the
# store (one LIST per database, 100,000 at scale; a CI run saw it when the
# first database's meta directory did not exist yet as the lease was taken).
# Then everything restores with all its rows.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/many_dbs.sh"
command -v python3 >/dev/null || skip "python3 not installed"

N=4
make_dbs "$T/dbs" "$N" 1 3 wal
cat >"$T/sluice.yml" <<YML
dbs:
  - dir: $T/dbs
    pattern: "*.db"
    replica:
      url: file://$T/rep
      sync-interval: 100ms
YML

owner_of() { grep -o 'held (owner [^,]*' "$1" | head -1 | sed 's/.*owner //'; }

sluice_start -config "$T/sluice.yml"
for i in $(seq 0 $((N - 1))); do
  wait_until 60 restores_now "t$i.db" || fail "t$i.db not replicated"
done
sluice_stop
first=$(owner_of "$T/sluice.log")
[ -n "$first" ] || fail "no lease held in the first run"

# A tenant created while sluice is down, first in path order.
sqlite3 "$T/dbs/a.db" "PRAGMA journal_mode=wal; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t(v) VALUES ('new tenant');" >/dev/null
[ ! -e "$T/dbs/.a.db-litestream" ] || fail "a.db has a meta directory already"

mv "$T/sluice.log" "$T/sluice.log.1"
sluice_start -config "$T/sluice.yml"
wait_until 60 restores_now a.db || fail "a.db (created while down) not replicated"
for i in $(seq 0 $((N - 1))); do
  wait_until 30 grep -q "asleep from the start.*t$i\.db" "$T/sluice.log" ||
    fail "t$i.db not asleep from the start"
done
second=$(owner_of "$T/sluice.log")
[ "$second" = "$first" ] ||
  fail "lease owner changed across the restart: '$first' then '$second'"
grep -q "taking it over from" "$T/sluice.log" &&
  fail "the lease was taken over from our own earlier run"
if grep "resuming replication" "$T/sluice.log" | grep -qE 't[0-3]\.db'; then
  fail "a database asleep from the start listed the store"
fi
grep -q "$first" "$T/dbs/.a.db-litestream/sluice-lease-owner" ||
  fail "the owner id is not kept in the first database's meta directory"
sluice_stop
grep -E 'level=ERROR' "$T/sluice.log" && fail "errors in the log"

restore_dbs "restore" "$((N + 1))" "$T/dbs" "$T/out" -config "$T/sluice.yml"
for f in a t0 t1 t2 t3; do
  [ "$(sqlite3 "$T/out/$f.db" "PRAGMA integrity_check")" = ok ] || fail "$f.db: integrity_check"
  [ "$(rows_of "$T/out/$f.db")" = "$(rows_of "$T/dbs/$f.db")" ] || fail "$f.db: rows differ"
done
echo PASS
