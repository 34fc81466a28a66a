#!/bin/sh
# The whole test suite, as CI runs it: install what is missing, build (plain
# and with ASan+UBSan), start the S3/Azure/GCS test servers and run every
# test under CTest inside a loopback-only network namespace when possible.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS=$(nproc 2>/dev/null || echo 2)

scripts/install-deps.sh --test
# The test servers' npm packages, keyed by package-lock.json: an installed
# tree is kept in $SLUICE_CACHE (default ~/.cache/sluice), so a fresh
# checkout (or a lock changed back) costs a hard-linked copy, not minutes of
# npm ci.  A tree installed by an older check.sh (no .sluice-lock) is used
# as it is; a node_modules that is a symlink (another checkout's) too.
NM=tests/servers/node_modules
LOCK=$(sha256sum tests/servers/package-lock.json | cut -c1-16)
if [ ! -L "$NM" ] && { [ ! -d "$NM" ] ||
  { [ -f "$NM/.sluice-lock" ] && [ "$(cat "$NM/.sluice-lock")" != "$LOCK" ]; }; }; then
  CACHE=${SLUICE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/node_modules-$LOCK
  rm -rf "$NM"
  if [ -f "$CACHE/.sluice-lock" ]; then
    echo "test servers from $CACHE"
    cp -al "$CACHE" "$NM" 2>/dev/null || { rm -rf "$NM"; cp -a "$CACHE" "$NM"; }
  else
    echo "installing test servers (npm ci)"
    # --ignore-scripts: the only install scripts are protobufjs's version
    # check and the optional native re2 (firebase-tools' superstatic), whose
    # prebuilt download is unreachable here, so npm compiled it from source:
    # minutes of C++ that no test server uses.
    (cd tests/servers && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$LOCK" >"$NM/.sluice-lock"
    mkdir -p "$(dirname "$CACHE")" && rm -rf "$CACHE" "$CACHE.tmp"
    if cp -al "$NM" "$CACHE.tmp" 2>/dev/null ||
      { rm -rf "$CACHE.tmp" && cp -a "$NM" "$CACHE.tmp"; }; then
      mv "$CACHE.tmp" "$CACHE"
    else
      echo "note: could not keep $NM in $CACHE"
    fi
  fi
fi

# The container image (tests/e2e/image.sh) is built from the apt mirror,
# which the tests' network namespace cannot reach: build it here, when its
# inputs changed (the Debian base is made once), in build/image-cache.  It
# is mostly download and unpacking, so it runs in the background beside the
# builds; the image test waits for it (the cache's lock).  (Not niced: beside
# two CPU hogs it would not be done when the image test needs it.)
IMAGE_PID=
if [ -z "${SANITIZE_ONLY:-}" ]; then
  SLUICE_IMAGE_CACHE=$ROOT/build/image-cache
  export SLUICE_IMAGE_CACHE
  mkdir -p "$SLUICE_IMAGE_CACHE"
  tests/e2e/image.sh --prepare >"$SLUICE_IMAGE_CACHE/prepare.out" 2>&1 &
  IMAGE_PID=$!
fi

ASAN_ARGS="-DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=ON"
build_dir() { # builddir cmake-args...
  dir=$1; shift
  cmake -S . -B "$dir" "$@" >/dev/null
  cmake --build "$dir" -j "$JOBS"
}
test_dir() { # builddir
  # Tests run in a private network namespace (nothing leaves the machine)
  # when we are allowed to create one.
  if [ "$(id -u)" -eq 0 ] && unshare -n true 2>/dev/null; then
    unshare -n sh -c "ip link set lo up && '$ROOT/scripts/ctest-with-servers.sh' '$1'"
  else
    scripts/ctest-with-servers.sh "$1"
  fi
}

# The sanitizer and fuzzing builds compile at the lowest priority while the
# plain suite runs (its tests mostly wait on I/O and timers): minutes saved,
# and the suite gets a loaded machine, which it must pass on anyway.
renice_tree() { # pid nice: it and its descendants to that niceness
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do renice_tree "$c" "$2"; done
  renice -n "$2" -p "$1" >/dev/null 2>&1 || true
}
bg_nice() { if [ -f build/bg-fast ]; then echo 10; else echo 19; fi; }
BG_PID=
FUZZ_PID=
# The load above the CPUs that is not ours, for ctest-with-servers.sh: the
# 1-minute average less the background builds and fuzzing this script runs
# at a low priority beside the suites (they yield to the tests; counted as
# outside load they made a quiet machine look busy and halved the jobs).
# Kept once set (SLUICE_OUTSIDE_LOAD from the caller, or the first call).
outside_load() {
  [ -z "${SLUICE_OUTSIDE_LOAD:-}" ] || return 0
  own=0
  if [ -n "$BG_PID" ] && [ ! -e build/bg-done ]; then
    own=$JOBS # a background build (the fuzzing waits for the last one)
  elif [ -n "$FUZZ_PID" ] && [ ! -e build/fuzz.rc ]; then
    own=${FUZZ_JOBS:-$JOBS}
  fi
  SLUICE_OUTSIDE_LOAD=$(awk -v o="$own" -v n="$JOBS" \
    '{ l = int($1) - o - n; print (l > 0 ? l : 0) }' /proc/loadavg 2>/dev/null || echo 0)
  export SLUICE_OUTSIDE_LOAD
}
rm -f build/fuzz.out build/fuzz.rc
if [ -z "${SANITIZE_ONLY:-}" ]; then
  build_dir build -DCMAKE_BUILD_TYPE=RelWithDebInfo
  rm -f build/bg-fast build/bg-done build/bg-asan-done
  (
    if [ -z "${NO_SANITIZE:-}" ]; then
      # shellcheck disable=SC2086
      nice -n "$(bg_nice)" sh -c "cmake -S . -B build-asan $ASAN_ARGS >/dev/null &&
        cmake --build build-asan -j $JOBS" >build/bg-asan.log 2>&1 || true
    fi
    touch build/bg-asan-done
    if [ -z "${NO_FUZZ:-}" ] && command -v clang >/dev/null; then
      nice -n "$(bg_nice)" sh -c "CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON >/dev/null &&
        cmake --build build-fuzz -j $JOBS --target fuzz_all" >build/bg-fuzz.log 2>&1 || true
    fi
    touch build/bg-done
  ) &
  BG_PID=$!
  # The fuzzing (FUZZ_SECONDS per target, two at a time) starts as soon as
  # its build is done, at nice 10: beside the plain suite, which leaves
  # most of a CPU idle, it costs the suite little and CI no wall time; what
  # is left of it when the suite ends runs beside the ASan suite.
  if [ -z "${NO_FUZZ:-}" ]; then
    (
      # (A marker, not kill -0: the finished builds stay a zombie until the
      # wait below.)
      until [ -e build/bg-done ]; do sleep 2; done
      rc=0
      FUZZ_SECONDS=${FUZZ_SECONDS:-30} nice -n 10 scripts/fuzz.sh >build/fuzz.out 2>&1 || rc=$?
      echo "$rc" >build/fuzz.rc
    ) &
    FUZZ_PID=$!
  fi
  # Measured once, before the plain suite, for both suites: at the ASan
  # suite's start the 1-minute average still holds the plain suite's own.
  outside_load
  test_dir build
  # Whatever is left of those builds now gets more of the machine: at nice
  # 19 beside other work (two CPU hogs) it would barely move.  The ASan
  # build, which the ASan suite waits for, at nice 0; the fuzzing build
  # (beside the ASan suite) at 10, as the fuzzing.  Lowering the niceness
  # again needs root; otherwise it just finishes as it is.
  touch build/bg-fast # (a build not started yet starts at nice 10)
  if [ -e build/bg-asan-done ]; then renice_tree "$BG_PID" 10; else renice_tree "$BG_PID" 0; fi
  wait "$IMAGE_PID" 2>/dev/null || true
  cat "$SLUICE_IMAGE_CACHE/prepare.out"
fi
# The background ASan build: finished (or failed: the build below says
# why).  Not the fuzzing build after it: that goes on beside the ASan
# suite, and the fuzzing after it (waited for at the end).
if [ -n "$BG_PID" ]; then
  until [ -e build/bg-asan-done ] || [ -e build/bg-done ]; do sleep 1; done
fi
if [ -z "${NO_SANITIZE:-}" ]; then
  echo "== again under ASan+UBSan =="
  # shellcheck disable=SC2086
  build_dir build-asan $ASAN_ARGS
  # (Tests that do not exercise the binary's code, such as e2e/shellcheck,
  # are disabled in this build: CMakeLists.txt.)  Sanitized tests take
  # several times the CPU, but mostly wait on I/O and timers: 1.5 per CPU
  # (395 s wall instead of 583 on an idle machine, the suite's CPU 452 s);
  # on a loaded machine ctest-with-servers.sh takes the load off that.
  # Not our own load: the fuzzing build and the fuzzing beside this suite
  # (nice 10, they yield to it) would count as a loaded machine.
  outside_load
  CTEST_JOBS_PER_CPU=${CTEST_JOBS_PER_CPU:-1.5} \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    test_dir build-asan
fi
# Each libFuzzer target for 30 s under ASan+UBSan, two at a time, from its
# corpus and a fixed seed (scripts/fuzz.sh; FUZZ_SECONDS to change): begun
# beside the suites above, or here (SANITIZE_ONLY).
if [ -z "${NO_FUZZ:-}" ]; then
  echo "== fuzzing (${FUZZ_SECONDS:-30} s per target) =="
  if [ -n "$FUZZ_PID" ]; then
    wait "$FUZZ_PID" 2>/dev/null || true
    cat build/fuzz.out
    [ "$(cat build/fuzz.rc 2>/dev/null)" = 0 ] || exit 1
  else
    FUZZ_SECONDS=${FUZZ_SECONDS:-30} scripts/fuzz.sh
  fi
fi
