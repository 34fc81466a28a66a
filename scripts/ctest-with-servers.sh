#!/bin/sh
# Starts the test servers (S3, Azure Blob, GCS) on 127.0.0.1, runs CTest in
# the given build directory, stops the servers.
set -u
dir=$1
ROOT=$(cd "$(dirname "$0")/.." && pwd)
RUN=$(mktemp -d /tmp/sluice-servers.XXXXXX)
export RUN
trap '"$ROOT/tests/servers/test-servers.sh" stop >/dev/null 2>&1; rm -rf "$RUN"' EXIT INT TERM
"$ROOT/tests/servers/test-servers.sh" start || exit 1
# Extra arguments go to ctest (e.g. -R REGEX).  CTEST_JOBS_PER_CPU (default
# 2) tests per CPU: most wait on timers, I/O and the servers.
# (CTest's PROCESSORS would make a test run alone at -j 2.)  On a machine
# busy already, one fewer per unit of load, down to one per CPU: more
# would only stretch every test towards its deadline.  The load is
# SLUICE_OUTSIDE_LOAD when given, else the 1-minute average above the
# CPUs.  CTEST_JOBS sets the number.
shift
ncpu=$(nproc 2>/dev/null || echo 2)
if [ -n "${SLUICE_OUTSIDE_LOAD:-}" ]; then
  load=$SLUICE_OUTSIDE_LOAD
  over=$load
else
  load=$(awk '{ printf "%d", $1 }' /proc/loadavg 2>/dev/null || echo 0)
  over=$((load > ncpu ? load - ncpu : 0))
fi
jobs=$(awk -v p="${CTEST_JOBS_PER_CPU:-2}" -v n="$ncpu" -v o="$over" \
  'BEGIN { printf "%d", p * n - o }')
[ "$jobs" -ge "$ncpu" ] || jobs=$ncpu
jobs=${CTEST_JOBS:-$jobs}
echo "ctest -j $jobs ($ncpu CPUs, load $load)"
# A fresh build has no test durations yet: start from tests/ctest-costs.txt
# (one ASan run's), so the longest tests start first instead of last.
cost=$dir/Testing/Temporary/CTestCostData.txt
if [ ! -f "$cost" ] && [ -f "$ROOT/tests/ctest-costs.txt" ]; then
  mkdir -p "$(dirname "$cost")" && cp "$ROOT/tests/ctest-costs.txt" "$cost"
fi
t0=$(date +%s)
rc=0
SLUICE_TEST_SERVERS=1 ctest --test-dir "$dir" --output-on-failure \
  -j "$jobs" --timeout 300 "$@" || rc=$?
# Where the time went: CPU seconds of the tests (everything CTest ran and
# reaped) and of the servers, against the wall time: near CPUs x wall, the
# suite is bound by the CPUs, not by its timers.
tck=$(getconf CLK_TCK 2>/dev/null || echo 100)
srv=0
for f in "$RUN"/*.pid; do
  [ -f "$f" ] || continue
  t=$(awk '{ print $14 + $15 }' "/proc/$(cat "$f")/stat" 2>/dev/null || echo 0)
  srv=$((srv + ${t:-0}))
done
times >"$RUN/times" # (not in a pipe: a subshell has no children)
awk -v wall=$(($(date +%s) - t0)) -v srv="$srv" -v tck="$tck" 'NR == 2 {
  split($1, u, "m"); split($2, s, "m")
  cpu = u[1] * 60 + u[2] + s[1] * 60 + s[2]
  printf "suite CPU: tests %.0f s, servers %.0f s, in %d s wall\n", cpu, srv / tck, wall }' "$RUN/times"
exit "$rc"
