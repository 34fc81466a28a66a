#!/usr/bin/env bash
# Churn in a watched directory (issue #9): N databases exist and replicate;
# then N new ones are created over SECONDS while the N old ones are deleted.
# Every new one must be replicated (restored from the store with
# `restore -o OUTDIR DIR`, every row compared, integrity_check), and the
# daemon's memory and fds must come back to where they were with N
# databases before the churn (+-5 %).
#   bench/churn.sh BUILD [N] [SECONDS]
set -euo pipefail
BUILD=${1:-build}
N=${2:-1000}
SECS=${3:-10}
HERE=$(cd "$(dirname "$0")" && pwd)
SLUICE=$(cd "$BUILD" && pwd)/sluice
T=$(mktemp -d /tmp/sluice-churn.XXXXXX)
PID=
trap '[ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null; rm -rf "$T"' EXIT
rss() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
fds() { ls "/proc/$PID/fd" | wc -l; }
count() { grep -c -- "$1" "$T/sluice.log" || true; }
wait_count() { # wait_count PATTERN N SECONDS
  local end=$((SECONDS + $3))
  while [ "$(count "$1")" -lt "$2" ]; do
    [ $SECONDS -lt $end ] || { echo "timeout: $(count "$1")/$2 $1" >&2; return 1; }
    sleep 0.2
  done
}
mkdir -p "$T/ten"
cat >"$T/sluice.yml" <<YML
dbs:
  - dir: $T/ten
    pattern: "*.db"
    watch: true
    replica:
      path: $T/rep
      sync-interval: 1s
YML
"$SLUICE" replicate -config "$T/sluice.yml" >"$T/sluice.log" 2>&1 &
PID=$!
sleep 1
base0_rss=$(rss); base0_fds=$(fds)
python3 "$HERE/churn.py" create "$T/ten" old "$N" 20
wait_count 'msg="snapshot written' "$N" 300
sleep 5 # quiet: every database idle
before_rss=$(rss); before_fds=$(fds)
start=$(date +%s%3N)
python3 "$HERE/churn.py" churn "$T/ten" "$N" 20 "$SECS" >"$T/churn.out"
churn_line=$(cat "$T/churn.out")
wait_count 'msg="snapshot written' $((2 * N)) 300
wait_count 'database removed from replication' "$N" 300
done_ms=$(($(date +%s%3N) - start))
sleep 10 # quiet again
after_rss=$(rss); after_fds=$(fds)
errors=$(count 'level=ERROR')
kill -TERM "$PID"; wait "$PID" || true; PID=
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/out" -parallelism 8 "$T/ten" >"$T/restore.log" 2>&1 ||
  { tail -5 "$T/restore.log"; echo "dir restore failed" >&2; exit 1; }
summary=$(grep -o 'restored [0-9]*, skipped [0-9]*, failed [0-9]*' "$T/restore.log")
python3 "$HERE/churn.py" verify "$T/ten" "$T/out" new- >"$T/verify.out" || { cat "$T/verify.out"; exit 1; }
verify=$(tail -1 "$T/verify.out")
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f %%", (a - b) * 100 / b }'; }
cat <<OUT
churn: $N databases created while $N deleted, paced over ${SECS}s (watched dir, file replica)
  creator: $churn_line
  no database:       RSS $base0_rss KiB, $base0_fds fds
  $N databases before: RSS $before_rss KiB, $before_fds fds
  $N databases after:  RSS $after_rss KiB ($(pct "$after_rss" "$before_rss")), $after_fds fds ($(pct "$after_fds" "$before_fds"))
  every new one replicating and every old one stopped after $done_ms ms from the start of the churn
  errors logged: $errors
  restore of the dir: $summary; new ones: $verify
OUT
