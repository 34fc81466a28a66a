#!/usr/bin/env bash
# config check with 100,000 databases: linear, not quadratic (it took over
# 60 s before).  Compared with 10,000 in the same run, so a loaded machine
# or a sanitizer build does not matter: linear is a ratio of about 10, the
# old quadratic duplicate check about 32 (1.4 s and 45 s here).
source "$SRCDIR/tests/lib/common.sh"

gen() { # n file
  awk -v n="$1" -v t="$T" 'BEGIN {
    print "dbs:"
    for (i = 0; i < n; i++)
      printf "  - path: %s/dbs/d%d.db\n    replicas:\n      - url: file://%s/rep/d%d\n", t, i, t, i
  }' >"$2"
}

timed_check() { # n file -> sets MS
  local start rc=0
  start=$(date +%s%N)
  timeout 200 "$SLUICE" config check -config "$2" >"$T/out" 2>"$T/err" || rc=$?
  MS=$((($(date +%s%N) - start) / 1000000))
  [ "$rc" -eq 0 ] || { tail -3 "$T/out" "$T/err" >&2; fail "config check of $1 exited $rc"; }
  [ "$(grep -c '^db: ' "$T/out")" -eq "$1" ] || fail "$1: not every database listed"
  [ "$(tail -n1 "$T/out")" = "config ok ($1 warnings)" ] ||
    fail "$1: last line: $(tail -n1 "$T/out")"
}

gen 10000 "$T/small.yml"
gen 100000 "$T/big.yml"
timed_check 10000 "$T/small.yml"
small=$MS
timed_check 100000 "$T/big.yml"
big=$MS
[ "$big" -lt $((small * 20 + 2000)) ] ||
  fail "100,000 databases took $big ms, 10,000 took $small ms: not linear"

# A duplicate is still found, at the second one's line.
printf '  - path: %s/dbs/d77777.db\n' "$T" >>"$T/big.yml"
rc=0
"$SLUICE" config check -config "$T/big.yml" >"$T/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "duplicate accepted"
grep -q "^error: $T/big.yml:$((100000 * 3 + 2)): path: duplicate database path \"$T/dbs/d77777.db\"" "$T/out" ||
  { tail -3 "$T/out"; fail "duplicate not reported at its line"; }
echo "config_check_scale: 10,000 databases in $small ms, 100,000 in $big ms"
