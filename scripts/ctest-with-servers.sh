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
# 2) tests per CPU: most wait on timers, I/O and the servers.  (CTest's
# PROCESSORS would make a test run alone at -j 2.)  On a machine
# busy already, one fewer per unit of load above the CPUs, down to one per
# CPU: more would only stretch every test towards its deadline.
# CTEST_JOBS sets the number.
shift
ncpu=$(nproc 2>/dev/null || echo 2)
load=$(awk '{ printf "%d", $1 }' /proc/loadavg 2>/dev/null || echo 0)
jobs=$((${CTEST_JOBS_PER_CPU:-2} * ncpu - (load > ncpu ? load - ncpu : 0)))
[ "$jobs" -ge "$ncpu" ] || jobs=$ncpu
jobs=${CTEST_JOBS:-$jobs}
echo "ctest -j $jobs ($ncpu CPUs, load $load)"
SLUICE_TEST_SERVERS=1 ctest --test-dir "$dir" --output-on-failure \
  -j "$jobs" --timeout 300 "$@"
