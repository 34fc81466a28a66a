#!/usr/bin/env bash
# `sluice replicas` prints replica, generation and lag first, so operators'
# `replicas DB | tail -n1 | awk '{print $3}'` works: 0s for a caught-up
# replica, a growing lag for one whose store is unreachable, and the lag
# falls back to 0s when the store returns.
source "$SRCDIR/tests/lib/common.sh"

mkdir -p "$T/down"
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: good
        url: file://$T/replica
        sync-interval: 100ms
      - name: flaky
        url: file://$T/down/replica
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sluice_start -config "$T/sluice.yml"
lag_of() { "$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" | awk -v r="$1" '$1 == r {print $3}'; }
flaky_caught_up() { [ "$(lag_of flaky)" = 0s ]; }
wait_until 10 flaky_caught_up || fail "flaky not caught up: $(lag_of flaky)"
head=$("$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" | head -1 | awk '{print $1, $2, $3}')
[ "$head" = "replica generation lag" ] || fail "header is '$head'"

# The flaky store goes away: its lag grows, the good one stays at 0s.
mv "$T/down" "$T/down.away" && touch "$T/down"
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sleep 1.5
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sleep 0.5
"$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" >"$T/out"
cat "$T/out"
[ "$(awk '$1 == "good" {print $3}' "$T/out")" = 0s ] || fail "good replica lags"
flaky=$(awk '$1 == "flaky" {print $3}' "$T/out")
case "$flaky" in
  [123]s | [123].*s) ;;
  *) fail "flaky lag should be about 2s, got $flaky" ;;
esac
[ "$("$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" | tail -n1 | awk '{print $3}')" != 0s ] ||
  fail "tail -n1 | awk '{print \$3}' does not show the lag"

# The store returns: the replica catches up and the lag is 0s again.
rm -f "$T/down" && mv "$T/down.away" "$T/down"
wait_until 40 flaky_caught_up || fail "flaky did not catch up: $(lag_of flaky)"
sluice_stop
"$SLUICE" restore -config "$T/sluice.yml" -replica flaky -o "$T/restored.db" "$T/app.db" \
  >/dev/null 2>&1 || fail "restore from the recovered replica failed"
assert_same_db "$T/app.db" "$T/restored.db"
echo PASS
