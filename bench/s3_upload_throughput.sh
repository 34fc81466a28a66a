#!/usr/bin/env bash
# Upload throughput of a large snapshot to the local S3 servers: one
# PutObject versus multipart (8 MiB parts, 4 in parallel), streamed from a
# file.  Usage: bench/s3_upload_throughput.sh [SIZE_MIB...]  (default 64 256)
# Needs a build (build/core_s3obj) and the test servers (started if needed).
# Numbers are for loopback servers written in Node (s3rver) and Python
# (moto): they measure our client path and the servers, not the network.
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
need_servers
TOOL=$BUILDDIR/core_s3obj
[ -x "$TOOL" ] || fail "build first: $TOOL"
export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_EC2_METADATA_DISABLED=true
SIZES=${*:-64 256}
PREFIX=bench-$$

run() { # label endpoint bucket file threshold
  local t0 t1 out
  t0=$(date +%s%N)
  out=$(SLUICE_S3_MULTIPART_THRESHOLD=$5 "$TOOL" -v --endpoint "$2" --bucket "$3" \
    --path "$PREFIX" put big "$4" 2>&1 | grep '^requests=') || true
  t1=$(date +%s%N)
  local mib=$(( $(stat -c %s "$4") / 1048576 ))
  awk -v l="$1" -v m="$mib" -v ns=$((t1 - t0)) -v r="$out" \
    'BEGIN { printf "%-34s %5d MiB  %7.1f MiB/s  %s\n", l, m, m / (ns / 1e9), r }'
  "$TOOL" --endpoint "$2" --bucket "$3" --path "$PREFIX" del big >/dev/null 2>&1
}

for mib in $SIZES; do
  head -c $((mib * 1048576)) /dev/urandom >"$T/snap"
  run "s3rver single PutObject" http://127.0.0.1:4568 testbucket "$T/snap" 100000000000
  run "s3rver multipart 8MiBx4" http://127.0.0.1:4568 testbucket "$T/snap" 16777216
  if curl -s -o /dev/null --max-time 1 http://127.0.0.1:5000/moto-api/; then
    B=sluice-bench-$$
    curl -s -o /dev/null -X PUT "http://127.0.0.1:5000/$B"
    run "moto single PutObject" http://127.0.0.1:5000 "$B" "$T/snap" 100000000000
    run "moto multipart 8MiBx4" http://127.0.0.1:5000 "$B" "$T/snap" 16777216
  fi
done
