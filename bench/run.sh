#!/usr/bin/env bash
# Benchmarks of sluice, each reported as a ratio against a baseline measured
# in the same run on the same machine.  Writes bench/RESULTS.md.
#
#   bench/run.sh [BUILD_DIR] [SECTION...]
#   sections: writer snapshot scale shortconn s3 image   (default: all)
#
# writer    one-row transactions with sluice replicating / without, at
#           synchronous=FULL and NORMAL, and the WAL size at the end
# snapshot  snapshot of a ~200 MB database / `lz4 -1`; restore / `lz4 -d`+cp
# scale     200 databases in one process: RSS per database, CPU while idle
# shortconn connect + insert + close per transaction, alone / with sluice
#           (bench/short_conn.sh)
# s3        requests per hour (busy and idle database) and upload throughput
#           of a large snapshot, single PUT vs multipart, to the local S3
#           servers (bench/s3_*.sh)
# image     the container image's size (tests/e2e/image.sh --sizes, which
#           builds it first when it is not current)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
shift || true
SECTIONS=${*:-writer snapshot scale shortconn s3 image}
SLUICE=$BUILD/sluice
WRITER=$BUILD/sqlwriter
W=$(mktemp -d /tmp/sluice-bench.XXXXXX)
OUT=$W/results.md
trap 'pkill -P $$ 2>/dev/null; rm -rf "$W"' EXIT
DURATION=${DURATION:-4}

say() { echo "$*" | tee -a "$OUT"; }

machine() {
  say "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)," \
    "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), kernel $(uname -r)," \
    "disk under /tmp: $(df -h /tmp | awk 'NR==2 {print $1}'), $(date -u +%Y-%m-%d)"
  say ""
}

tx_per_sec() { sed -n 's/.*tx_per_sec=\([0-9]*\).*/\1/p' "$1"; }
wal_bytes() { sed -n 's/.*wal_bytes=\([0-9]*\).*/\1/p' "$1"; }

start_sluice() { # config log
  "$SLUICE" replicate -config "$1" >"$2" 2>&1 &
  SPID=$!
}

stop_sluice() {
  kill -TERM "$SPID" 2>/dev/null || true
  wait "$SPID" 2>/dev/null || true
}

bench_writer() {
  say "## Writer throughput (one-row transactions, ${DURATION}s each)"
  say ""
  say "| synchronous | alone tx/s | with sluice tx/s | ratio | WAL alone | WAL with sluice |"
  say "|---|---|---|---|---|---|"
  for sync in full normal; do
    local d=$W/writer-$sync
    mkdir -p "$d/a" "$d/b"
    "$WRITER" -db "$d/a/app.db" -n 1 >/dev/null
    "$WRITER" -db "$d/a/app.db" -duration "$DURATION" -sync "$sync" >"$d/alone.out"
    local wal_a
    wal_a=$(wal_bytes "$d/alone.out")
    cat >"$d/sluice.yml" <<YML
dbs:
  - path: $d/b/app.db
    replicas:
      - url: file://$d/replica
YML
    "$WRITER" -db "$d/b/app.db" -n 1 >/dev/null
    start_sluice "$d/sluice.yml" "$d/sluice.log"
    sleep 1
    "$WRITER" -db "$d/b/app.db" -duration "$DURATION" -sync "$sync" >"$d/with.out"
    local wal_b
    wal_b=$(wal_bytes "$d/with.out")
    stop_sluice
    local a b
    a=$(tx_per_sec "$d/alone.out")
    b=$(tx_per_sec "$d/with.out")
    say "| $sync | $a | $b | $(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b/a}') |" \
      "$(numfmt --to=iec "$wal_a") | $(numfmt --to=iec "$wal_b") |"
  done
  say ""
}

bench_snapshot() {
  say "## Snapshot and restore of a ~200 MB database"
  say ""
  local d=$W/snap
  mkdir -p "$d"
  "$WRITER" -db "$d/app.db" -n 2000 -rows 200 -size 400 -sync off >/dev/null
  sqlite3 "$d/app.db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
  local size
  size=$(stat -c %s "$d/app.db")
  sync
  local t0 t1 t_lz4 t_snap
  t0=$(date +%s%N)
  lz4 -1 -q -f "$d/app.db" "$d/app.db.lz4"
  t1=$(date +%s%N)
  t_lz4=$(( (t1 - t0) / 1000000 ))
  cat >"$d/sluice.yml" <<YML
dbs:
  - path: $d/app.db
    replicas:
      - url: file://$d/replica
YML
  t0=$(date +%s%N)
  start_sluice "$d/sluice.yml" "$d/sluice.log"
  while ! ls "$d"/replica/generations/*/snapshots/*.snapshot.lz4 >/dev/null 2>&1; do
    sleep 0.01
  done
  t1=$(date +%s%N)
  t_snap=$(( (t1 - t0) / 1000000 ))
  stop_sluice
  say "Database $(numfmt --to=iec "$size")."
  say ""
  say "| step | sluice ms | baseline | baseline ms | ratio |"
  say "|---|---|---|---|---|"
  say "| snapshot (start to snapshot stored) | $t_snap | \`lz4 -1\` | $t_lz4 |" \
    "$(awk -v a="$t_lz4" -v b="$t_snap" 'BEGIN {printf "%.2f", b/a}') |"
  local snapf t_restore t_base
  snapf=$(ls "$d"/replica/generations/*/snapshots/*.snapshot.lz4 | head -1)
  sync
  t0=$(date +%s%N)
  lz4 -d -q -f "$snapf" "$d/base.db"
  cp "$d/base.db" "$d/base2.db"
  t1=$(date +%s%N)
  t_base=$(( (t1 - t0) / 1000000 ))
  t0=$(date +%s%N)
  "$SLUICE" restore -o "$d/restored.db" "file://$d/replica" >/dev/null 2>&1
  t1=$(date +%s%N)
  t_restore=$(( (t1 - t0) / 1000000 ))
  say "| restore (\`sluice restore\`) | $t_restore | \`lz4 -d\` + \`cp\` | $t_base |" \
    "$(awk -v a="$t_base" -v b="$t_restore" 'BEGIN {printf "%.2f", b/a}') |"
  say ""
}

bench_scale() {
  local n=${SCALE_DBS:-200}
  say "## $n databases in one process"
  say ""
  local d=$W/scale
  mkdir -p "$d/dbs"
  {
    echo "dbs:"
    for i in $(seq 1 "$n"); do
      "$WRITER" -db "$d/dbs/db$i.db" -n 5 >/dev/null
      printf '  - path: %s\n    replicas:\n      - url: file://%s\n' \
        "$d/dbs/db$i.db" "$d/replica/db$i"
    done
  } >"$d/sluice.yml"
  printf 'dbs: []\n' >"$d/empty.yml"
  start_sluice "$d/empty.yml" "$d/empty.log"
  sleep 1
  local rss0
  rss0=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status")
  stop_sluice
  start_sluice "$d/sluice.yml" "$d/sluice.log"
  local i=0
  while [ "$(ls "$d/replica" 2>/dev/null | wc -l)" -lt "$n" ] && [ $i -lt 600 ]; do
    sleep 0.1
    i=$((i + 1))
  done
  sleep 2
  local rss fds t0 t1 idle
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$SPID/status")
  fds=$(ls "/proc/$SPID/fd" | wc -l)
  t0=$(awk '{print $14 + $15}' "/proc/$SPID/stat")
  local sw0 sw1
  sw0=$(awk '/voluntary_ctxt_switches/ {s += $2} END {print s}' "/proc/$SPID/status")
  idle=${IDLE_SECONDS:-60}
  sleep "$idle"
  t1=$(awk '{print $14 + $15}' "/proc/$SPID/stat")
  sw1=$(awk '/voluntary_ctxt_switches/ {s += $2} END {print s}' "/proc/$SPID/status")
  stop_sluice
  local hz
  hz=$(getconf CLK_TCK)
  say "| measure | value |"
  say "|---|---|"
  say "| RSS with no database (baseline) | ${rss0} KiB |"
  say "| RSS with $n databases | ${rss} KiB |"
  say "| RSS per database | $(( (rss - rss0) / n )) KiB |"
  say "| open files | $fds ($(awk -v f="$fds" -v n="$n" 'BEGIN {printf "%.1f", f/n}') per database) |"
  say "| CPU over ${idle}s idle | $(awk -v t=$((t1 - t0)) -v hz="$hz" -v s="$idle" 'BEGIN {printf "%.3f%% of a core", 100*t/hz/s}') |"
  say "| context switches over ${idle}s idle | $((sw1 - sw0)) |"
  say ""
}

bench_shortconn() {
  BUILDDIR=$BUILD SLUICE=$SLUICE "$ROOT/bench/short_conn.sh" 2>/dev/null | tee -a "$OUT"
}

bench_s3() {
  say "## S3: requests and upload throughput"
  say ""
  BUILDDIR=$BUILD "$ROOT/bench/s3_requests_per_hour.sh" 20 200 2>/dev/null | tee -a "$OUT"
  say ""
  BUILDDIR=$BUILD "$ROOT/bench/s3_upload_throughput.sh" 64 256 2>/dev/null | tee -a "$OUT"
  say ""
}

bench_image() {
  say "## Container image"
  say ""
  BUILDDIR=$BUILD "$ROOT/tests/e2e/image.sh" --sizes 2>&1 | tee -a "$OUT" ||
    say "tests/e2e/image.sh --sizes failed"
  say ""
}

: >"$OUT"
say "# Benchmark results"
say ""
machine
for s in $SECTIONS; do "bench_$s"; done
cat "$ROOT/bench/NOTES.md" >>"$OUT"
cp "$OUT" "$ROOT/bench/RESULTS.md"
echo "wrote bench/RESULTS.md"
