#!/usr/bin/env bash
# `sluice replicas` prints replica, generation and lag first, so operators'
# `replicas DB | tail -n1 | awk '{print $3}'` works: 0s for a caught-up
# replica, a growing lag for one whose store is unreachable, and the lag
# falls back to 0s when the store returns.
source "$SRCDIR/tests/lib/common.sh"

# The flaky replica's path goes through $T/down, a symlink switched
# atomically (rename) between a directory and a plain file: while it points
# at the file every request fails (ENOTDIR), and sluice cannot recreate the
# directory in between (as it could between a mv and a touch).
mkdir -p "$T/store" && touch "$T/nodir"
point_down() { ln -sfn "$1" "$T/down.new" && mv -T "$T/down.new" "$T/down"; }
point_down "$T/store"
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
point_down "$T/nodir"
t0=$(date +%s%N)
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sleep 1.5 # (the first change ages)
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
# Polled (a loaded machine may see the daemon notice the commits late):
# good at 0s while flaky shows a lag, which is at most the age of the
# first change it lacks.
lag_shown() {
  "$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" >"$T/out" &&
    [ "$(awk '$1 == "good" {print $3}' "$T/out")" = 0s ] &&
    [ "$(awk '$1 == "flaky" {print $3}' "$T/out")" != 0s ]
}
wait_until 30 lag_shown || { cat "$T/out"; fail "no lag for flaky with good at 0s"; }
age=$((($(date +%s%N) - t0 + 999999999) / 1000000000))
cat "$T/out"
flaky=$(awk '$1 == "flaky" {print $3}' "$T/out")
if ! [[ "$flaky" =~ ^[0-9]+s$ ]] || [ "${flaky%s}" -lt 1 ] || [ "${flaky%s}" -gt "$age" ]; then
  fail "flaky lag should be 1s..${age}s (the age of its first missing change), got $flaky"
fi
[ "$("$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" | tail -n1 | awk '{print $3}')" != 0s ] ||
  fail "tail -n1 | awk '{print \$3}' does not show the lag"

# The store returns: the replica catches up and the lag is 0s again.
point_down "$T/store"
wait_until 40 flaky_caught_up || fail "flaky did not catch up: $(lag_of flaky)"
sluice_stop
"$SLUICE" restore -config "$T/sluice.yml" -replica flaky -o "$T/restored.db" "$T/app.db" \
  >/dev/null 2>&1 || fail "restore from the recovered replica failed"
assert_same_db "$T/app.db" "$T/restored.db"
echo PASS
