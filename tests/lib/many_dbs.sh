# shellcheck shell=bash
# Many databases in one directory, for the scale tests (sourced after
# common.sh).  The databases are t<i>.db, i < N, with WIDTH digits.
MANY_DBS_PY=$SRCDIR/tests/lib/many_dbs.py

# make_dbs DIR N WIDTH ROWS [wal|off]: creates them (one Python process:
# a sqlite3 CLI per database is too slow); see many_dbs.py.
make_dbs() {
  mkdir -p "$1"
  python3 "$MANY_DBS_PY" create "$@" || fail "cannot create the databases in $1"
}

# restore_dbs LABEL N DIR OUT ARGS...: `sluice restore ARGS -o OUT DIR`
# (ARGS: -config ... -replica ...), which must restore all N.
restore_dbs() {
  local label=$1 n=$2 dir=$3 out=$4
  shift 4
  rm -rf "$out"
  "$SLUICE" restore "$@" -o "$out" "$dir" >"$T/restore.log" 2>&1 ||
    fail "$label: restore of $dir failed: $(tail -3 "$T/restore.log")"
  grep -q "restored $n, skipped 0, failed 0" "$T/restore.log" ||
    fail "$label: restore summary: $(tail -1 "$T/restore.log")"
}

# compare_dbs LABEL SRC OUT N WIDTH [--rep REP] [--rows EXPR] [--gens EXPR]:
# every restored database integrity ok with its source's rows (and, given,
# that many rows and generations: Python expressions of i).
compare_dbs() {
  local label=$1
  shift
  python3 "$MANY_DBS_PY" compare "$@" --label "$label" ||
    fail "$label: restored databases differ"
}

# rows_of DB: its rows, as text (the same query for a source and a restore).
rows_of() { sqlite3 "$1" "SELECT id, v FROM t ORDER BY id"; }

# restores_now FILE: $T/dbs/FILE restores (config $T/sluice.yml) to the
# rows it holds now.
restores_now() {
  local f=$1 out=$T/chk-$1
  rm -f "$out"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$out" "$T/dbs/$f" >/dev/null 2>&1 &&
    [ "$(rows_of "$out")" = "$(rows_of "$T/dbs/$f")" ]
}
