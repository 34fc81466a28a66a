#!/bin/sh
# `make check-tsan`: the tests that drive the thread pool (the daemon's
# engine jobs, segment builds, restores) under ThreadSanitizer.  A race
# report makes the daemon exit 66, which fails its test; reports are also
# written to build-tsan/tsan.*.  Tests that measure memory or time a fault
# against the HTTP retries are left out: TSan's 5-15x slowdown and memory
# overhead break their budgets, not the code.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
scripts/install-deps.sh --test
if [ ! -d tests/servers/node_modules ]; then
  (cd tests/servers && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
fi
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug -DSLUICE_TSAN=ON >/dev/null
cmake --build build-tsan -j "$(nproc 2>/dev/null || echo 2)"
rm -f build-tsan/tsan.*
TESTS='e2e/(abs_replicate|dormant|start_asleep|lease_dir|lease_file|age_encryption|dir_watch|dir_watch_s3|exec|gcs_replicate|idle_burst|lease_s3|metrics|reload|replicas_lag|replicate_basic|replicate_cli_mode|replicate_pitr|restore_large|retention|sdnotify|sftp_replicate|shutdown_no_db|validation|validation_shutdown)$|unit/test_(db|engine|http|lease|replica|restore|restore_fetch|stop_inflight|store|work)$'
TSAN_OPTIONS="log_path=$ROOT/build-tsan/tsan second_deadlock_stack=1 suppressions=$ROOT/tests/tsan.supp"
export TSAN_OPTIONS
run="'$ROOT/scripts/ctest-with-servers.sh' build-tsan -R '$TESTS'"
if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
  unshare -n sh -c "ip link set lo up && $run"
else
  sh -c "$run"
fi
if ls build-tsan/tsan.* >/dev/null 2>&1; then
  echo "ThreadSanitizer reports:" >&2
  cat build-tsan/tsan.* >&2
  exit 1
fi
