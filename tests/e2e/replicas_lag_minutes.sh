#!/usr/bin/env bash
# The operators' guide's lag exporter and alert (README "Monitoring"):
#   LAG=$(sluice replicas DB | tail -n1 | awk '{print $3}' | sed 's/s//')
#   [ "$LAG" -gt 10 ] && alert
# work at every lag: `replicas` prints whole seconds ("164s", never
# "2m44s"), checked here with a replica held behind for more than a minute
# (its store unreachable).  A caught-up replica reads 0s, running and after
# a clean stop, on the file backend and on S3 (s3rver).
source "$SRCDIR/tests/lib/common.sh"

S3_OK=0
need_servers 2>/dev/null && curl -s -o /dev/null --max-time 2 http://127.0.0.1:4568/ &&
  S3_OK=1
PREFIX=lag-$$-$RANDOM
# The flaky replica's path goes through $T/down, a symlink switched
# atomically (rename) between a directory and a plain file: while it points
# at the file every request fails (ENOTDIR), and sluice cannot recreate the
# directory in between (as it could between a mv and a touch).
mkdir -p "$T/store" && touch "$T/nodir"
point_down() { ln -sfn "$1" "$T/down.new" && mv -T "$T/down.new" "$T/down"; }
point_down "$T/store"
{
  cat <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: good
        url: file://$T/replica
        sync-interval: 100ms
YML
  if [ "$S3_OK" = 1 ]; then
    cat <<YML
      - name: s3
        type: s3
        bucket: testbucket
        path: $PREFIX
        endpoint: http://127.0.0.1:4568
        force-path-style: true
        access-key-id: S3RVER
        secret-access-key: S3RVER
        sync-interval: 100ms
YML
  fi
  cat <<YML
      - name: flaky
        url: file://$T/down/replica
        sync-interval: 100ms
YML
} >"$T/sluice.yml"

# The guide's exporter and alert, verbatim but for the paths.
exporter() {
  "$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" | tail -n1 |
    awk '{print $3}' | sed 's/s//'
}
alert() { # prints "ALERT" when the exporter's lag is over 10 s
  local LAG
  LAG=$(exporter)
  if [ "$LAG" -gt 10 ] 2>"$T/alert.err"; then echo ALERT; else echo ok; fi
  [ -s "$T/alert.err" ] && fail "alert: $(cat "$T/alert.err") (LAG=$LAG)"
  return 0
}
lag_of() {
  "$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" |
    awk -v r="$1" '$1 == r {print $3}'
}
caught_up() {
  local r
  for r in good flaky ${S3_OK/#1/s3}; do
    [ "$r" = 0 ] && continue
    [ "$(lag_of "$r")" = 0s ] || return 1
  done
}

"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 30 caught_up || fail "not caught up: $("$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db")"
[ "$(alert)" = ok ] || fail "alert fired for a caught-up replica"

# The flaky store goes away; the database keeps changing.
point_down "$T/nodir"
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
t0=$(date +%s)
over_a_minute() {
  local lag
  lag=$(lag_of flaky)
  [[ "$lag" =~ ^[0-9]+s$ ]] || fail "flaky lag '$lag' is not whole seconds"
  [ "${lag%s}" -gt 61 ]
}
fired_at=
while ! over_a_minute; do
  [ $(($(date +%s) - t0)) -lt 150 ] || fail "flaky lag never passed a minute: $(lag_of flaky)"
  [ -z "$fired_at" ] && [ "$(alert)" = ALERT ] && fired_at=$(($(date +%s) - t0))
  "$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
  sleep 1
done
[ -n "$fired_at" ] || fired_at=$(($(date +%s) - t0))
[ "$(alert)" = ALERT ] || fail "alert silent at lag $(lag_of flaky)"
"$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" >"$T/out"
cat "$T/out"
[ "$(awk '$1 == "good" {print $3}' "$T/out")" = 0s ] || fail "good replica lags"
grep -Eq '[0-9]m[0-9]' "$T/out" && fail "a lag printed in minutes"
echo "alert fired ${fired_at}s after the store went away; lag $(lag_of flaky)"

# The store returns: caught up, 0s, the alert is quiet.
point_down "$T/store"
wait_until 60 caught_up || fail "flaky did not catch up: $(lag_of flaky)"
[ "$(alert)" = ok ] || fail "alert fired after catching up"

# A clean stop: every replica caught up reads 0s, and still does a while
# later (nothing changed since).
sluice_stop
"$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" >"$T/out1"
sleep 2
"$SLUICE" replicas -config "$T/sluice.yml" "$T/app.db" >"$T/out2"
cat "$T/out2"
for f in out1 out2; do
  [ "$(awk 'NR > 1 && $3 != "0s"' "$T/$f" | wc -l)" -eq 0 ] ||
    fail "stopped and caught up, but a lag is not 0s: $(cat "$T/$f")"
done
# ... until the database changes while sluice is stopped.
sqlite3 "$T/app.db" "INSERT INTO t(k, v) VALUES(1, 'after stop')"
sleep 1.2
lag=$(lag_of good)
[[ "$lag" =~ ^[1-9][0-9]*s$ ]] || fail "a change after the stop shows lag '$lag'"
"$SLUICE" restore -config "$T/sluice.yml" -replica flaky -o "$T/restored.db" \
  "$T/app.db" >/dev/null 2>&1 || fail "restore from the recovered replica failed"
"$SLUICE" restore -config "$T/sluice.yml" -replica good -o "$T/good.db" \
  "$T/app.db" >/dev/null 2>&1 || fail "restore from the good replica failed"
sqlite3 "$T/app.db" "DELETE FROM t WHERE v = 'after stop'"
# Every commit before the stop, the last one too (it once came while the
# database went to sleep and was in no replica), from both replicas.
assert_same_db "$T/app.db" "$T/good.db"
assert_same_db "$T/app.db" "$T/restored.db"
echo "S3 replica checked: $S3_OK"
echo PASS
