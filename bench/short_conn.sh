#!/usr/bin/env bash
# Short-connection throughput: an application that connects, inserts one
# row and closes per transaction (tests/tools/shortwriter.c, no busy
# timeout, no pause between transactions), alone and with sluice
# replicating the same database to a file replica; and the same with the
# sqlite3 CLI, one process per transaction.  Prints a markdown section.
#
#   bench/short_conn.sh [TRANSACTIONS] [CLI_TRANSACTIONS]   (2000, 300)
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
N=${1:-2000}
NCLI=${2:-300}
SHORTWRITER=$BUILDDIR/shortwriter

tps() { sed -n 's/.*tx_per_sec=\([0-9]*\).*/\1/p' "$1"; }
locked() { sed -n 's/.*locked=\([0-9]*\).*/\1/p' "$1"; }
wal_max() { sed -n 's/.*wal_max_bytes=\([0-9]*\).*/\1/p' "$1"; }

cli_run() { # db n -> tx/s
  local i t0 t1 fails=0
  t0=$(date +%s%N)
  for i in $(seq "$2"); do
    sqlite3 "$1" "INSERT INTO t(k, v) VALUES($i, 'cli')" 2>/dev/null ||
      fails=$((fails + 1))
  done
  t1=$(date +%s%N)
  echo "tx_per_sec=$(awk -v n="$2" -v ns=$((t1 - t0)) 'BEGIN {printf "%.0f", n / (ns / 1e9)}') locked=$fails"
}

run() { # name with-sluice(0|1)
  local d=$T/$1
  mkdir -p "$d"
  "$SQLWRITER" -db "$d/app.db" -n 1 >/dev/null
  if [ "$2" = 1 ]; then
    cat >"$d/sluice.yml" <<YML
dbs:
  - path: $d/app.db
    replicas:
      - url: file://$d/replica
YML
    : >"$T/sluice.log"
    sluice_start -config "$d/sluice.yml"
    wait_until 30 test -d "$d/replica/generations" || fail "no generation"
  fi
  "$SHORTWRITER" -db "$d/app.db" -n "$N" >"$d/c.out" || fail "shortwriter"
  cli_run "$d/app.db" "$NCLI" >"$d/cli.out"
  if [ "$2" = 1 ]; then
    sluice_stop
    "$SLUICE" restore -config "$d/sluice.yml" -o "$d/restored.db" \
      "$d/app.db" >/dev/null 2>&1 || fail "restore"
    assert_same_db "$d/app.db" "$d/restored.db"
  fi
}

run alone 0
run with 1
a=$(tps "$T/alone/c.out") b=$(tps "$T/with/c.out")
ca=$(tps "$T/alone/cli.out") cb=$(tps "$T/with/cli.out")
echo "## Short connections (connect + insert + close per transaction)"
echo ""
echo "| writer | transactions | alone tx/s | with sluice tx/s | ratio | locked alone / with | WAL max alone / with |"
echo "|---|---|---|---|---|---|---|"
echo "| C (shortwriter, no busy timeout) | $N | $a | $b |" \
  "$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", b/a}') |" \
  "$(locked "$T/alone/c.out") / $(locked "$T/with/c.out") |" \
  "$(numfmt --to=iec "$(wal_max "$T/alone/c.out")") / $(numfmt --to=iec "$(wal_max "$T/with/c.out")") |"
echo "| sqlite3 CLI (one process each) | $NCLI | $ca | $cb |" \
  "$(awk -v a="$ca" -v b="$cb" 'BEGIN {printf "%.2f", b/a}') |" \
  "$(locked "$T/alone/cli.out") / $(locked "$T/with/cli.out") | - |"
echo "Generations with sluice: $(ls "$T/with/replica/generations" | wc -l)," \
  "WAL indexes: $(ls "$T"/with/replica/generations/*/wal | sed -n 's/_.*//p' | sort -u | wc -l)."
echo ""
