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
# Extra arguments go to ctest (e.g. -R REGEX).  Three tests per CPU: most
# wait on timers, I/O and the servers (the few that keep a CPU busy count
# as two, CMakeLists.txt PROCESSORS); CTEST_JOBS to change.
shift
SLUICE_TEST_SERVERS=1 ctest --test-dir "$dir" --output-on-failure \
  -j "${CTEST_JOBS:-$((3 * $(nproc 2>/dev/null || echo 2)))}" --timeout 300 "$@"
