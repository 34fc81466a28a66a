#!/usr/bin/env bash
# Requests per hour that `sluice replicate` makes to S3 for an idle and
# for a busy database (the store's bill), counted by a logging proxy in
# front of s3rver and extrapolated from a short run.
# Usage: bench/s3_requests_per_hour.sh [SECONDS] [RATE_TX_PER_SEC]
#        (defaults 20 s, 200 tx/s; sync-interval 1s, Litestream's default)
#        UPSTREAM=127.0.0.1:5000 measures against moto instead of s3rver.
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
need_servers
SECS=${1:-20}
RATE=${2:-200}
PROXY=$SRCDIR/tests/tools/s3_fault_proxy.py
UPSTREAM=${UPSTREAM:-127.0.0.1:4568}
# moto starts empty; s3rver has testbucket from tests/servers.
curl -s -o /dev/null -X PUT "http://$UPSTREAM/testbucket" || true

measure() { # name writer-args (empty: idle)
  local name=$1; shift
  local d=$T/${name%% *}; mkdir -p "$d"
  python3 "$PROXY" --upstream "$UPSTREAM" --log "$d/requests.log" >"$d/port" 2>/dev/null &
  local proxy=$!; PIDS+=($proxy)
  wait_until 10 grep -q PORT "$d/port" || fail "proxy"
  local port; port=$(awk '{print $2}' "$d/port")
  cat >"$d/sluice.yml" <<YML
dbs:
  - path: $d/app.db
    replicas:
      - type: s3
        bucket: testbucket
        path: bench-$$/${name%% *}
        endpoint: http://127.0.0.1:$port
        access-key-id: S3RVER
        secret-access-key: S3RVER
YML
  "$SQLWRITER" -db "$d/app.db" -n 100 >/dev/null
  sluice_start -config "$d/sluice.yml"
  sleep 3 # startup: generation, snapshot
  local start; start=$(wc -l <"$d/requests.log")
  if [ $# -gt 0 ]; then
    "$SQLWRITER" -db "$d/app.db" -duration "$SECS" "$@" >/dev/null
  else
    sleep "$SECS"
  fi
  local n=$(( $(wc -l <"$d/requests.log") - start ))
  sluice_stop
  kill "$proxy"; wait "$proxy" 2>/dev/null
  local by; by=$(tail -n +$((start + 1)) "$d/requests.log" | python3 -c '
import sys, json, collections
c = collections.Counter(json.loads(l)["method"] for l in sys.stdin)
print(" ".join("%s=%d" % kv for kv in sorted(c.items())))')
  printf "%-28s %6d requests in %ss = %8d per hour  (%s)\n" "$name" "$n" "$SECS" \
    $(( n * 3600 / SECS )) "$by"
}

measure idle
measure "busy ($RATE tx/s)" -rate "$RATE"
