#!/usr/bin/env bash
# S3 requests per minute that N idle databases cost (their replicas caught
# up, nothing written): the lease renewals are all that is left.  Counted
# by the logging proxy in front of the S3 test server, for N databases
# under one `dir:` entry (one lease at the entry's replica root) and for
# the same N as N `dbs:` entries (a lease per replica path).
# Usage: bench/lease_idle.sh [N] [SECONDS]   (defaults 50 dbs, 60 s; lease-ttl 30s)
#        UPSTREAM=127.0.0.1:5000 measures against moto instead of s3rver.
#        LEASE_IDLE_TTL=0 renews idle leases at lease-ttl (as before
#        lease-idle-ttl existed); unset, the default (1h) applies.
#        SETTLE=S waits S seconds after the last snapshot before counting
#        (default 5; an idle lease is renewed as idle after a whole
#        lease-ttl without uploads, so 45 measures its steady state).
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
need_servers
N=${1:-50}
SECS=${2:-60}
PROXY=$SRCDIR/tests/tools/s3_fault_proxy.py
UPSTREAM=${UPSTREAM:-127.0.0.1:4568}
curl -s -o /dev/null -X PUT "http://$UPSTREAM/testbucket" || true

s3_keys() { # port prefix
  cat <<YML
      type: s3
      bucket: testbucket
      path: $2
      endpoint: http://127.0.0.1:$1
      access-key-id: S3RVER
      secret-access-key: S3RVER
YML
  if [ -n "${LEASE_IDLE_TTL:-}" ]; then
    echo "      lease-idle-ttl: $LEASE_IDLE_TTL"
  fi
}

settled() { [ "$(grep -c 'snapshot written' "$T/sluice.log")" -ge "$N" ]; }

measure() { # layout: dir | dbs
  local kind=$1 d=$T/$1 i
  mkdir -p "$d/data"
  python3 "$PROXY" --upstream "$UPSTREAM" --log "$d/requests.log" >"$d/port" 2>/dev/null &
  local proxy=$!
  PIDS+=($proxy)
  wait_until 10 grep -q PORT "$d/port" || fail "proxy"
  local port
  port=$(awk '{print $2}' "$d/port")
  for i in $(seq "$N"); do
    mkdir -p "$d/data/t$i"
    "$SQLWRITER" -db "$d/data/t$i/app.db" -n 5 >/dev/null
  done
  {
    echo "dbs:"
    if [ "$kind" = dir ]; then
      printf '  - dir: %s\n    pattern: "*.db"\n    recursive: true\n    replica:\n' "$d/data"
      s3_keys "$port" "lease-bench-$$/dir" | sed 's/^/  /'
    else
      for i in $(seq "$N"); do
        printf '  - path: %s\n    replicas:\n      -\n' "$d/data/t$i/app.db"
        s3_keys "$port" "lease-bench-$$/dbs/t$i" | sed 's/^  //' | sed 's/^/    /'
      done
    fi
  } >"$d/sluice.yml"
  sluice_start -config "$d/sluice.yml"
  # Settled: every database snapshotted, then a few quiet seconds.
  wait_until 120 settled ||
    fail "$kind: not every database was snapshotted"
  sleep "${SETTLE:-5}"
  local start n by
  start=$(wc -l <"$d/requests.log")
  sleep "$SECS"
  tail -n +$((start + 1)) "$d/requests.log" >"$d/window.log"
  n=$(wc -l <"$d/window.log")
  by=$(python3 -c '
import sys, json, collections
c = collections.Counter(json.loads(l)["method"] for l in sys.stdin)
print(" ".join("%s=%d" % kv for kv in sorted(c.items())))' <"$d/window.log")
  sluice_stop
  : >"$T/sluice.log"
  kill "$proxy"
  wait "$proxy" 2>/dev/null
  printf "%-4s %5d idle dbs: %6d requests in %ss = %7.1f per minute (%s; lease-idle-ttl %s, settle %ss)\n" \
    "$kind" "$N" "$n" "$SECS" "$(echo "$n * 60 / $SECS" | bc -l)" "$by" \
    "${LEASE_IDLE_TTL:-default}" "${SETTLE:-5}"
}

measure dir
measure dbs
