#!/usr/bin/env bash
# A replica whose store goes away for longer than its lease TTL while the
# application keeps committing (one commit per WAL index, as a writer that
# opens, commits and closes makes it): the replica loses its lease, takes
# it again when the store returns, lists the store and catches up.  Every
# commit must then be in a restore from that replica, as from the replica
# that never failed ("no acknowledged position skips a committed frame").
# The e2e/replicas_lag_minutes case (a 60 s outage) in a few seconds.  It
# caught, under load, the last commit before a quiet moment missing from
# both replicas: it came in while the database went to sleep, after the
# engine's last copy and before its probe of the -wal, so no wake was due
# and the clean stop did not upload it (core/engine.c engine_sleep).
source "$SRCDIR/tests/lib/common.sh"

ROUNDS=${LEASE_OUTAGE_ROUNDS:-2}
# $T/down is a symlink, switched atomically (rename) between a directory
# and a plain file: while it points at the file every request on the path
# fails with ENOTDIR, and sluice cannot recreate the directory meanwhile.
mkdir -p "$T/store" && touch "$T/nodir"
point_down() { ln -sfn "$1" "$T/down.new" && mv -T "$T/down.new" "$T/down"; }
point_down "$T/store"
cat >"$T/sluice.yml" <<YML
logging: {level: debug}
dbs:
  - path: $T/app.db
    checkpoint-interval: ${LEASE_OUTAGE_CKPT:-100ms}
    replicas:
      - name: good
        url: file://$T/replica
        sync-interval: 100ms
        lease-ttl: 2s
        lease-idle-ttl: 0 # this case is the lapse
      - name: flaky
        url: file://$T/down/replica
        sync-interval: 100ms
        lease-ttl: 2s
        lease-idle-ttl: 0 # this case is the lapse
YML

pos_of() {
  "$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" |
    awk -v r="$1" '$1 == r {print $4}'
}
same_pos() {
  local g f
  g=$(pos_of good) f=$(pos_of flaky)
  [[ "$g" =~ ^[0-9a-f]{16}/[0-9a-f]{8}:[0-9]+$ ]] && [ "$g" = "$f" ]
}
commit() { "$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null || fail "sqlwriter"; }

"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 30 same_pos || fail "not caught up: $("$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db")"

for round in $(seq "$ROUNDS"); do
  point_down "$T/nodir"
  # Longer than the TTL: the lease lapses (its renewals fail).
  n0=$(grep -c "not renewed before it expired" "$T/sluice.log")
  t0=$(date +%s)
  while [ "$(grep -c "not renewed before it expired" "$T/sluice.log")" -le "$n0" ]; do
    [ $(($(date +%s) - t0)) -lt 60 ] || fail "round $round: the lease never lapsed"
    commit
    sleep 0.3
  done
  for _ in $(seq 8); do commit; sleep 0.3; done
  point_down "$T/store"
  # Commits go on while the replica takes its lease again and catches up.
  for _ in $(seq 8); do commit; sleep 0.2; done
  wait_until 90 same_pos || fail "round $round: flaky did not catch up: $("$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db")"
done

sluice_stop
grep -q "lease on file://$T/down/replica held" "$T/sluice.log" ||
  fail "the flaky replica never took its lease again"
for r in good flaky; do
  rm -f "$T/$r.db"
  "$SLUICE" restore -config "$T/sluice.yml" -replica "$r" -o "$T/$r.db" \
    "$T/app.db" >"$T/restore-$r.log" 2>&1 ||
    fail "restore from $r: $(cat "$T/restore-$r.log")"
  assert_same_db "$T/app.db" "$T/$r.db"
done
echo "rows: $(rows "$T/app.db"), generations: $(ls "$T/store/replica/generations" | wc -l)"
echo PASS
