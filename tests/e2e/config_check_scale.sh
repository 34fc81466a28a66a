#!/usr/bin/env bash
# config check with 100,000 databases: linear, not quadratic (it took over
# 60 s before; about 5 s on a loaded 2-core machine now).  The bound is
# generous so a busy machine does not fail it, and far below the old time.
source "$SRCDIR/tests/lib/common.sh"

N=100000
awk -v n=$N -v t="$T" 'BEGIN {
  print "dbs:"
  for (i = 0; i < n; i++)
    printf "  - path: %s/dbs/d%d.db\n    replicas:\n      - url: file://%s/rep/d%d\n", t, i, t, i
}' >"$T/big.yml"
start=$(date +%s%N)
rc=0
timeout 120 "$SLUICE" config check -config "$T/big.yml" >"$T/out" 2>"$T/err" || rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ "$rc" -eq 0 ] || { tail -3 "$T/out" "$T/err" >&2; fail "config check exited $rc"; }
[ "$(grep -c '^db: ' "$T/out")" -eq $N ] || fail "not every database listed"
[ "$(tail -n1 "$T/out")" = "config ok ($N warnings)" ] ||
  fail "last line: $(tail -n1 "$T/out")"
[ "$ms" -lt 30000 ] || fail "config check of $N databases took $ms ms"

# A duplicate is still found, at the second one's line.
printf '  - path: %s/dbs/d77777.db\n' "$T" >>"$T/big.yml"
rc=0
"$SLUICE" config check -config "$T/big.yml" >"$T/out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "duplicate accepted"
grep -q "^error: $T/big.yml:$((N * 3 + 2)): path: duplicate database path \"$T/dbs/d77777.db\"" "$T/out" ||
  { tail -3 "$T/out"; fail "duplicate not reported at its line"; }
echo "config_check_scale: $N databases in $ms ms"
