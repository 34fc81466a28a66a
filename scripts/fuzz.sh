#!/bin/bash
# Builds the libFuzzer targets of tests/fuzz (clang, ASan+UBSan) into
# build-fuzz and runs each for FUZZ_SECONDS (default 30), starting from its
# seed corpus in tests/fuzz/corpus/<target>/ (never modified: new inputs go
# to build-fuzz/corpus/<target>/).  A crash stops with the target's report;
# its input is in build-fuzz/artifacts/ (add it to the seed corpus once
# fixed, as a regression).
#   scripts/fuzz.sh                 every target
#   scripts/fuzz.sh fuzz_xml ...    only these
# Prints one line per target: executions, execs/s, corpus size.
# FUZZ_SEED (default 1) fixes libFuzzer's seed, so a CI run explores the
# same inputs as the run that passed before it (up to the time limit);
# FUZZ_SEED=0 picks a random seed, for longer hunts with `make fuzz`.
set -eu
cd "$(dirname "$0")/.."
SECONDS_EACH=${FUZZ_SECONDS:-30}
DIR=${FUZZ_BUILD:-build-fuzz}
command -v clang >/dev/null || { echo "fuzz: clang not installed (scripts/install-deps.sh --test)"; exit 1; }
CC=clang cmake -S . -B "$DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_FUZZ=ON >/dev/null
cmake --build "$DIR" -j "$(nproc 2>/dev/null || echo 2)" --target fuzz_all
targets=${*:-$(find tests/fuzz -maxdepth 1 -name 'fuzz_*.c' | sed 's|.*/||; s/\.c$//' | sort)}
mkdir -p "$DIR/artifacts"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# FUZZ_JOBS targets at a time (default: the number of CPUs).
JOBS=${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 2)}
run_one() { # target: runs it, writes its result line to $DIR/$t.result
  t=$1
  mkdir -p "$DIR/corpus/$t"
  log=$DIR/$t.log
  if "$DIR/$t" -max_total_time="$SECONDS_EACH" -seed="${FUZZ_SEED:-1}" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$DIR/artifacts/$t-" \
    "$DIR/corpus/$t" "tests/fuzz/corpus/$t" >"$log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n1)
    echo "fuzz $t: ok, $runs runs in ${SECONDS_EACH}s ($rate/s), $cov, corpus $(find "$DIR/corpus/$t" -type f | wc -l)" >"$DIR/$t.result"
  else
    { echo "fuzz $t: FAILED"
      grep -E "ERROR|SUMMARY|runtime error|Test unit written|#[0-9]+ 0x" "$log" | head -n 20
    } >"$DIR/$t.result"
    return 1
  fi
}
failed=0
running=0
for t in $targets; do
  rm -f "$DIR/$t.result"
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then
    wait -n 2>/dev/null || true
    running=$((running - 1))
  fi
done
wait
for t in $targets; do
  if [ -f "$DIR/$t.result" ]; then cat "$DIR/$t.result"; else echo "fuzz $t: FAILED (no result)"; fi
  grep -q ": ok," "$DIR/$t.result" 2>/dev/null || failed=1
done
exit $failed
