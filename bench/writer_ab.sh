#!/usr/bin/env bash
# The writer row of bench/run.sh as interleaved A/B rounds of several sluice
# binaries: each round runs the writer alone, then with each binary
# replicating (the order rotated from round to round), then alone again;
# a ratio is "with" over the mean of the round's two alone runs, so a disk
# whose fsync latency drifts between rounds cancels out of each ratio.
#
#   bench/writer_ab.sh ROUNDS SYNC NAME=SLUICE_BINARY...
#   DURATION (default 4) seconds per writer run, WRITER (default
#   build/sqlwriter).  Prints one line per run and, per binary, the mean,
#   min and max ratio.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ROUNDS=$1
SYNC=$2
shift 2
WRITER=${WRITER:-$ROOT/build/sqlwriter}
DURATION=${DURATION:-4}
W=$(mktemp -d /tmp/sluice-ab.XXXXXX)
trap 'pkill -P $$ 2>/dev/null; rm -rf "$W"' EXIT
names=() bins=()
for a in "$@"; do
  names+=("${a%%=*}")
  bins+=("${a#*=}")
done

tx() { sed -n 's/.*tx_per_sec=\([0-9]*\).*/\1/p' "$1"; }

alone() { # dir -> tx/s
  rm -rf "$1" && mkdir -p "$1"
  "$WRITER" -db "$1/app.db" -n 1 >/dev/null
  "$WRITER" -db "$1/app.db" -duration "$DURATION" -sync "$SYNC" >"$1/out"
  tx "$1/out"
}

with() { # dir binary -> tx/s
  rm -rf "$1" && mkdir -p "$1"
  "$WRITER" -db "$1/app.db" -n 1 >/dev/null
  printf 'dbs:\n  - path: %s/app.db\n    replicas:\n      - url: file://%s/replica\n' \
    "$1" "$1" >"$1/sluice.yml"
  "$2" replicate -config "$1/sluice.yml" >"$1/log" 2>&1 &
  local pid=$! i
  for i in $(seq 200); do # the first snapshot: replicating
    ls "$1"/replica/generations/*/snapshots/*.snapshot.lz4 >/dev/null 2>&1 && break
    sleep 0.05
  done
  "$WRITER" -db "$1/app.db" -duration "$DURATION" -sync "$SYNC" >"$1/out"
  kill -TERM "$pid"
  wait "$pid" || true
  tx "$1/out"
}

declare -A sum min max
n=${#names[@]}
for r in $(seq "$ROUNDS"); do
  a1=$(alone "$W/a")
  declare -A got
  for k in $(seq 0 $((n - 1))); do
    j=$(( (k + r) % n ))
    got[$j]=$(with "$W/w" "${bins[$j]}")
  done
  a2=$(alone "$W/a")
  line="round $r sync=$SYNC load=$(cut -d' ' -f1 /proc/loadavg) alone=$a1/$a2"
  for j in $(seq 0 $((n - 1))); do
    q=$(awk -v b="${got[$j]}" -v a="$a1" -v c="$a2" 'BEGIN {printf "%.3f", 2*b/(a+c)}')
    line="$line ${names[$j]}=${got[$j]}(${q})"
    sum[$j]=$(awk -v s="${sum[$j]:-0}" -v q="$q" 'BEGIN {print s+q}')
    min[$j]=$(awk -v s="${min[$j]:-9}" -v q="$q" 'BEGIN {print (q<s)?q:s}')
    max[$j]=$(awk -v s="${max[$j]:-0}" -v q="$q" 'BEGIN {print (q>s)?q:s}')
  done
  echo "$line"
done
for j in $(seq 0 $((n - 1))); do
  echo "${names[$j]} sync=$SYNC ratio mean $(awk -v s="${sum[$j]}" -v r="$ROUNDS" 'BEGIN {printf "%.3f", s/r}') min ${min[$j]} max ${max[$j]}"
done
