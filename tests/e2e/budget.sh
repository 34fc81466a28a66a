#!/usr/bin/env bash
# max-requests-per-second (issue 9): 20 databases, each with an S3 replica
# (moto, behind a proxy that logs every request with its time) at
# sync-interval 100ms, written at once: unbudgeted that is about 200 PUTs/s;
# with a budget of 10 the requests the store sees stay at or under
# 10/s (counted at the proxy, leases and listings included), the lag grows
# and is reported (metrics, status), and at the end every database restores
# every row, in one generation.  Then fairness: one tenant writes flat out
# while the others commit once a second each: their lag stays bounded by
# their turn (least recently served first), not by the busy tenant's.
source "$SRCDIR/tests/lib/common.sh"
need_servers
MOTO=http://127.0.0.1:5000
curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/" || skip "moto not running"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1
B=sluice-budget-$$-$RANDOM
s3_mb "$MOTO" "$B" ||
  fail "create moto bucket"
N=20
RPS=10
python3 "$SRCDIR/tests/tools/s3_fault_proxy.py" --upstream 127.0.0.1:5000 \
  --log "$T/requests.log" >"$T/proxy.port" 2>"$T/proxy.err" &
PIDS+=($!)
wait_until 10 grep -q PORT "$T/proxy.port" || fail "proxy did not start"
PROXY=http://127.0.0.1:$(awk '{print $2}' "$T/proxy.port")
PORT=$((20000 + RANDOM % 20000))

{
  echo "addr: 127.0.0.1:$PORT"
  echo "max-requests-per-second: $RPS"
  echo "dbs:"
  for i in $(seq 1 $N); do
    cat <<YML
  - path: $T/d$i.db
    replicas:
      - type: s3
        bucket: $B
        path: d$i
        endpoint: $PROXY
        region: us-east-1
        force-path-style: true
        access-key-id: test
        secret-access-key: test
        sync-interval: 100ms
YML
  done
} >"$T/sluice.yml"
for i in $(seq 1 $N); do "$SQLWRITER" -db "$T/d$i.db" -n 1 >/dev/null || fail "seed d$i"; done

"$SLUICE" config check -config "$T/sluice.yml" >"$T/check.out" 2>&1 || { cat "$T/check.out"; fail "config check"; }
grep -q "^budget: $RPS requests/s for every replica together" "$T/check.out" ||
  { cat "$T/check.out"; fail "config check does not show the budget"; }

metric() { # name -> value
  curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m {print $2}'
}
t0=$(date +%s.%N)
sluice_start -config "$T/sluice.yml"
wait_until 10 curl -s -o /dev/null "http://127.0.0.1:$PORT/metrics" || fail "no metrics server"
[ "$(metric sluice_budget_requests_per_second)" = "$RPS" ] || fail "budget metric: $(metric sluice_budget_requests_per_second)"

# --- 1. everyone writes: 8 s, 20 commits/s each ---
WP=()
for i in $(seq 1 $N); do
  "$SQLWRITER" -db "$T/d$i.db" -duration 8 -rate 20 >"$T/w$i.out" 2>&1 &
  WP+=($!)
done
waiting_seen=0 lag_seen=0 status_seen=0
end=$(($(date +%s) + 8))
while [ "$(date +%s)" -lt "$end" ]; do
  w=$(metric sluice_budget_waiting)
  l=$(metric sluice_replica_lag_max_seconds)
  [ "${w:-0}" -ge 1 ] 2>/dev/null && waiting_seen=1
  awk -v l="${l:-0}" 'BEGIN {exit !(l > 0.5)}' && lag_seen=1
  if [ $status_seen = 0 ] && "$SLUICE" status -addr "127.0.0.1:$PORT" >"$T/status.out" 2>&1 &&
    grep -q "waiting for its turn (max-requests-per-second)" "$T/status.out" &&
    grep -q "^budget: $RPS requests/s" "$T/status.out"; then
    status_seen=1
  fi
  sleep 0.3
done
for p in "${WP[@]}"; do wait "$p" || fail "a writer failed"; done
t1=$(date +%s.%N)
[ $waiting_seen = 1 ] || fail "sluice_budget_waiting never above 0"
[ $lag_seen = 1 ] || fail "sluice_replica_lag_max_seconds never above 0.5 s"
[ $status_seen = 1 ] || { cat "$T/status.out"; fail "status shows no replica waiting its turn"; }

# Requests the store saw while everyone wrote (from the daemon's start):
# the budget allows RPS per second plus its burst (1) and the lease
# renewals charged but not yet paid back (at most one per replica).
read -r count secs max1 < <(python3 - "$T/requests.log" "$t0" "$t1" <<'PY'
import json, sys, collections
t0, t1 = float(sys.argv[2]), float(sys.argv[3])
ts = [json.loads(l)["t"] for l in open(sys.argv[1])]
ts = [t for t in ts if t0 <= t <= t1]
per = collections.Counter(int(t) for t in ts)
print(len(ts), "%.2f" % (t1 - t0), max(per.values()) if per else 0)
PY
)
echo "budget: $count requests in $secs s (budget $RPS/s); busiest second $max1"
python3 -c "import sys; c,s=int(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if c <= $RPS*s + 1 + $N else 1)" "$count" "$secs" ||
  fail "$count requests in $secs s: over the budget of $RPS/s"
python3 -c "import sys; c,s=int(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if c >= $RPS*s*0.5 else 1)" "$count" "$secs" ||
  fail "$count requests in $secs s: the budget was not used (uploads starved?)"

# The backlog (start-up took 5 requests a replica: lease, listings,
# snapshot) drains; then nothing waits.
wait_until 60 sh -c "[ \"\$(curl -s http://127.0.0.1:$PORT/metrics | awk '\$1 == \"sluice_replica_lag_max_seconds\" {print \$2}')\" = 0 ]" ||
  fail "the backlog did not drain: lag $(metric sluice_replica_lag_max_seconds) s"

# --- 2. fairness: d1 flat out, the others one commit every 4 s ---
# (Each quiet commit is a WAL index of its own, after the idle checkpoint,
# so a PUT: 19 of them every 4 s fit the budget, with room for d1.)
"$SQLWRITER" -db "$T/d1.db" -duration 12 -rows 20 >"$T/busy.out" 2>&1 &
BUSY=$!
WP=()
for i in $(seq 2 $N); do
  "$SQLWRITER" -db "$T/d$i.db" -duration 12 -rate 0.25 >"$T/q$i.out" 2>&1 &
  WP+=($!)
done
# The largest lag of a quiet tenant, sampled: its turn comes after at most
# the N-1 others waiting ((N-1)/RPS = 1.9 s), plus the lease renewals (one
# per replica, charged at once: 2 s more); 5 s is that with room for a
# loaded machine.  d1's lag is not bounded by this: it is served once per
# turn too, a few segments at a time.
qmax=0
end=$(($(date +%s) + 12))
while [ "$(date +%s)" -lt "$end" ]; do
  curl -s --max-time 2 "http://127.0.0.1:$PORT/metrics" >"$T/metrics.now"
  m=$(awk -v busy="$T/d1.db" '/^sluice_replica_lag_seconds\{/ && index($0, "db=\"" busy "\"") == 0 {
      if ($2 > m) { m = $2; w = $1 } } END {print m + 0, w}' "$T/metrics.now")
  echo "$(date +%s.%N) $m" >>"$T/lag.samples"
  m=${m%% *}
  qmax=$(awk -v a="$qmax" -v b="$m" 'BEGIN {print (b > a ? b : a)}')
  sleep 0.2
done
wait "$BUSY" || fail "busy writer failed"
for p in "${WP[@]}"; do wait "$p" || fail "a quiet writer failed"; done
echo "fairness: largest lag of a quiet tenant while d1 wrote flat out: ${qmax} s"
awk -v q="$qmax" 'BEGIN {exit !(q <= 5)}' || fail "a quiet tenant lagged ${qmax} s behind a busy one"
awk -v q="$qmax" 'BEGIN {exit !(q > 0)}' || fail "no lag sampled (the metric is missing?)"

# --- the final sync uploads the rest; every database restores ---
sluice_stop
grep -q 'level=ERROR' "$T/sluice.log" && fail "errors while replicating"
# (The restores at once: each is a process of its own, mostly waiting on
# the store.)
RP=()
for i in $(seq 1 $N); do
  rm -f "$T/r$i.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/r$i.db" "$T/d$i.db" >"$T/restore$i.log" 2>&1 &
  RP+=($!)
done
for i in $(seq 1 $N); do
  wait "${RP[$((i - 1))]}" || { cat "$T/restore$i.log"; fail "restore d$i failed"; }
done
for i in $(seq 1 $N); do
  assert_same_db "$T/d$i.db" "$T/r$i.db"
  g=$("$SLUICE" generations -config "$T/sluice.yml" "$T/d$i.db" | tail -n +2 | wc -l)
  [ "$g" -eq 1 ] || fail "d$i: $g generations"
done
echo "budget: $N databases restored, every row, one generation each"
