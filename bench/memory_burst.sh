#!/usr/bin/env bash
# Daemon memory during and after an unthrottled write burst on one
# database replicated to a file replica: RSS before, peak, at the end of
# the burst, and after the database has been quiet for IDLE seconds.
#   bench/memory_burst.sh BUILD [SECONDS] [IDLE]
set -euo pipefail
BUILD=${1:-build}
DUR=${2:-60}
IDLE=${3:-15}
SLUICE=$BUILD/sluice
WRITER=$BUILD/sqlwriter
T=$(mktemp -d /tmp/sluice-membench.XXXXXX)
trap 'kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; rm -rf "$T"' EXIT
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
rss_detail() { grep -E "^Rss" "/proc/$PID/status" | tr -s " \t" " " | tr "\n" " "; }
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML
"$WRITER" -db "$T/app.db" -n 1 >/dev/null
"$SLUICE" replicate -config "$T/sluice.yml" >"$T/sluice.log" 2>&1 &
PID=$!
until [ -d "$T/replica/generations" ]; do sleep 0.1; done
sleep 1
before=$(rss)
"$WRITER" -db "$T/app.db" -duration "$DUR" -size 200 >"$T/writer.out" &
W=$!
peak=$before
while kill -0 "$W" 2>/dev/null; do
  r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
  sleep 0.5
done
wait "$W"
end=$(rss)
sleep "$IDLE"
idle=$(rss)
detail=$(rss_detail)
echo "burst ${DUR}s: $(cat "$T/writer.out")"
echo "RSS KiB: before $before, peak $peak, end of burst $end, after ${IDLE}s quiet $idle"
echo "after the quiet period: $detail"
