#!/usr/bin/env bash
# Replicas written by the real Litestream 0.3.13 (tests/fixtures): every one
# restores to its source database, point-in-time restores give the rows of
# that moment, and the listing commands print what Litestream printed
# (except the lag column, which depends on when it runs).
. "$(dirname "$0")/../lib/common.sh"

[ -x "$SLUICE" ] || skip "no sluice binary at $SLUICE"

# no_leftovers DIR: nothing but the restored database in DIR.
no_leftovers() {
  local extra
  # shellcheck disable=SC2010 # the names come from our own temp directory
  extra=$(ls -A "$1" | grep -v -x "$2" || true)
  [ -z "$extra" ] || fail "left behind in $1: $extra"
}

# same_table GOT WANT: byte-identical, or (generations) identical but for
# the lag column once runs of spaces are squeezed.
same_table() {
  local got=$1 want=$2 kind=$3
  if [ "$kind" = generations ]; then
    awk '{ $3 = ""; print }' "$got" >"$got.nolag"
    awk '{ $3 = ""; print }' "$want" >"$got.wantnolag"
    cmp -s "$got.nolag" "$got.wantnolag" ||
      { diff "$got" "$want" >&2; fail "$kind differs from $want"; }
    # Columns still line up: each header word starts where its cells do.
    local h s
    h=$(head -1 "$got")
    for s in generation lag start end; do
      local col=${h%%"$s"*}
      awk -v c=${#col} 'NR > 1 && substr($0, c, 1) != " " { exit 1 }' "$got" ||
        fail "generations: column $s misaligned in $got"
    done
  else
    cmp -s "$got" "$want" || { diff "$got" "$want" >&2; fail "$kind differs from $want"; }
  fi
}

config_ok=1
probe=$("$SLUICE" databases -config /dev/null 2>&1 || true)
case $probe in
*"not implemented"*) config_ok=0; echo "note: config parser not available, config mode skipped" >&2 ;;
esac

for dir in "$FIXTURES"/*/; do
  name=$(basename "$dir")
  rep=$T/replicas/$name
  apply_manifest "$dir" "$rep"

  # Latest state, URL mode.
  out=$T/out/$name/db
  "$SLUICE" restore -o "$out" "file://$rep" 2>"$T/$name.log" ||
    { cat "$T/$name.log" >&2; fail "$name: restore failed"; }
  assert_same_db "$dir/source.db" "$out"
  dump "$out" | cmp -s - "$dir/expected/final.sql" || fail "$name: dump differs from expected/final.sql"
  no_leftovers "$T/out/$name" db
  grep -q 'restoring snapshot' "$T/$name.log" || fail "$name: no 'restoring snapshot' log"
  grep -q 'renaming database from temporary location' "$T/$name.log" ||
    fail "$name: no rename log"
  [ "$(stat -c %a "$out")" = 600 ] || fail "$name: mode $(stat -c %a "$out")"

  # Same with one download at a time.
  "$SLUICE" restore -parallelism 1 -o "$T/out/$name/p1" "file://$rep" 2>/dev/null ||
    fail "$name: -parallelism 1 failed"
  assert_same_db "$dir/source.db" "$T/out/$name/p1"

  # Listings, URL mode.
  for kind in generations snapshots wal; do
    "$SLUICE" $kind "file://$rep" >"$T/$name.$kind" 2>"$T/$name.$kind.err" ||
      { cat "$T/$name.$kind.err" >&2; fail "$name: $kind failed"; }
    same_table "$T/$name.$kind" "$dir/expected/$kind.txt" $kind
  done

  # Config mode: a database path, its replica by name.
  if [ $config_ok = 1 ]; then
    db=$T/dbs/$name/app.db
    mkdir -p "$(dirname "$db")"
    cat >"$T/$name.yml" <<YML
dbs:
  - path: $db
    replicas:
      - type: file
        path: $rep
YML
    # With the database's mtime at the NOTES "final" moment, even the lag
    # column is Litestream's.
    cp "$dir/source.db" "$db"
    touch -d "$(awk '$1 == "final" { print $2 }' "$dir/NOTES")" "$db"
    for kind in generations snapshots wal; do
      "$SLUICE" $kind -config "$T/$name.yml" "$db" >"$T/$name.c.$kind" 2>"$T/$name.c.err" ||
        { cat "$T/$name.c.err" >&2; fail "$name: config-mode $kind failed"; }
      same_table "$T/$name.c.$kind" "$dir/expected/$kind.txt" exact
    done
    # A -wal newer than the database counts.
    touch -d "$(awk '$1 == "final" { print $2 }' "$dir/NOTES") + 1 hour" "$db-wal"
    "$SLUICE" generations -config "$T/$name.yml" "$db" | awk 'NR == 2 { print $3 }' |
      grep -q '^1h0m' || fail "$name: lag ignores the -wal mtime"
    rm -f "$db" "$db-wal"
    "$SLUICE" wal -config "$T/$name.yml" -replica file "$db" >"$T/$name.c.wal2" ||
      fail "$name: wal -replica file failed"
    same_table "$T/$name.c.wal2" "$dir/expected/wal.txt" wal
    # Restore to the configured path (the default output).
    "$SLUICE" restore -config "$T/$name.yml" "$db" >"$T/$name.c.log" 2>&1 ||
      { cat "$T/$name.c.log" >&2; fail "$name: config-mode restore failed"; }
    assert_same_db "$dir/source.db" "$db"
    # Now it exists: refused, or skipped with -if-db-not-exists.
    if "$SLUICE" restore -config "$T/$name.yml" "$db" >"$T/$name.c.log" 2>&1; then
      fail "$name: restore over an existing database succeeded"
    fi
    grep -q "cannot restore, output path already exists: $db" "$T/$name.c.log" ||
      fail "$name: no 'already exists' error"
    "$SLUICE" restore -if-db-not-exists -config "$T/$name.yml" "$db" >"$T/$name.c.log" 2>&1 ||
      fail "$name: -if-db-not-exists exited non-zero"
    grep -q 'database already exists, skipping' "$T/$name.c.log" ||
      fail "$name: no 'skipping' log"
  fi
done

# Point in time: -timestamp of each NOTES moment gives that moment's rows;
# -index N-1 gives the same rows of t (one WAL index per batch in this
# fixture; Litestream's own _litestream_seq row differs).
dir=$FIXTURES/pitr
rep=$T/replicas/pitr
n=0
while read -r label when rows; do
  [ "$label" = final ] && continue
  out=$T/pitr/$label.db
  "$SLUICE" restore -timestamp "$when" -o "$out" "file://$rep" 2>"$T/pitr.log" ||
    { cat "$T/pitr.log" >&2; fail "pitr $label: restore failed"; }
  [ "$(sqlite3 "$out" 'PRAGMA integrity_check')" = ok ] || fail "pitr $label: integrity"
  dump "$out" | cmp -s - "$dir/expected/$label.sql" ||
    fail "pitr $label: dump at $when differs from expected/$label.sql ($rows)"
  idx=$(printf %x $n)
  "$SLUICE" restore -index "$idx" -o "$T/pitr/i$idx.db" "file://$rep" 2>/dev/null ||
    fail "pitr: -index $idx failed"
  [ "$(sqlite3 "$T/pitr/i$idx.db" 'PRAGMA integrity_check')" = ok ] ||
    fail "pitr -index $idx: integrity"
  rm -f "$T/pitr/want.db"
  sqlite3 "$T/pitr/want.db" <"$dir/expected/$label.sql"
  [ "$(sqlite3 "$T/pitr/i$idx.db" 'SELECT * FROM t ORDER BY id')" = \
    "$(sqlite3 "$T/pitr/want.db" 'SELECT * FROM t ORDER BY id')" ] ||
    fail "pitr: -index $idx: rows of t differ from expected/$label.sql"
  n=$((n + 1))
done <"$dir/NOTES"

# A timestamp after the last upload restores the latest state (Litestream
# 0.3.13 said "no matching backups found"); so does an index past the end.
"$SLUICE" restore -timestamp 2099-01-01T00:00:00Z -o "$T/pitr/late.db" "file://$rep" 2>/dev/null ||
  fail "pitr: late -timestamp failed"
assert_same_db "$dir/source.db" "$T/pitr/late.db"
"$SLUICE" restore -index 7fffffff -o "$T/pitr/far.db" "file://$rep" 2>/dev/null ||
  fail "pitr: -index past the end failed"
assert_same_db "$dir/source.db" "$T/pitr/far.db"
# Before the first upload: nothing matches.
if "$SLUICE" restore -timestamp 2000-01-01T00:00:00Z -o "$T/pitr/early.db" "file://$rep" 2>"$T/early.log"; then
  fail "pitr: early -timestamp succeeded"
fi
grep -q 'no matching backups found' "$T/early.log" || fail "pitr: early -timestamp message"

# multi-generation: -generation picks the older one; its rows are a subset.
dir=$FIXTURES/multi-generation
rep=$T/replicas/multi-generation
old=$(awk 'NR == 3 { print $2 }' "$dir/expected/generations.txt")
"$SLUICE" restore -generation "$old" -o "$T/mg/old.db" "file://$rep" 2>/dev/null ||
  fail "multi-generation: -generation $old failed"
[ "$(sqlite3 "$T/mg/old.db" 'PRAGMA integrity_check')" = ok ] || fail "old generation: integrity"
r=$(rows "$T/mg/old.db")
[ "$r" -gt 0 ] && [ "$r" -lt "$(rows "$dir/source.db")" ] || fail "old generation has $r rows"
"$SLUICE" wal -generation "$old" "file://$rep" >"$T/mg.wal"
grep -v -q "$old" <(tail -n +2 "$T/mg.wal") && fail "wal -generation listed other generations"
[ "$(wc -l <"$T/mg.wal")" -eq "$(grep -c "$old" "$dir/expected/wal.txt" | awk '{print $1 + 1}')" ] ||
  fail "wal -generation $old: wrong number of rows"

# databases: every configured database and its replica names.
if [ $config_ok = 1 ]; then
  cat >"$T/dbs.yml" <<YML
dbs:
  - path: $T/dbs/a.db
    replicas:
      - type: file
        path: $T/ra
      - name: second
        type: file
        path: $T/rb
  - path: $T/dbs/longer-name.db
    replicas:
      - url: file://$T/rc
YML
  "$SLUICE" databases -config "$T/dbs.yml" >"$T/dbs.out" || fail "databases failed"
  w=$(( ${#T} + 19 + 2 ))
  printf "%-${w}s%s\n" path replicas "$T/dbs/a.db" file,second \
    "$T/dbs/longer-name.db" file >"$T/dbs.want"
  cmp -s "$T/dbs.out" "$T/dbs.want" || { diff "$T/dbs.out" "$T/dbs.want" >&2; fail "databases output"; }
  # Unknown database and replica names.
  rc=0
  "$SLUICE" generations -config "$T/dbs.yml" "$T/dbs/none.db" >"$T/err" 2>&1 || rc=$?
  [ $rc -eq 1 ] && grep -q "database not found in config: $T/dbs/none.db" "$T/err" ||
    fail "unknown database: exit $rc, $(cat "$T/err")"
  rc=0
  "$SLUICE" snapshots -config "$T/dbs.yml" -replica nope "$T/dbs/a.db" >"$T/err" 2>&1 || rc=$?
  [ $rc -eq 1 ] && grep -qF "replica \\\"nope\\\" not found for database \\\"$T/dbs/a.db\\\"" "$T/err" ||
    fail "unknown replica: exit $rc, $(cat "$T/err")"
fi

echo "compat_fixtures: ok (config mode: $config_ok)"
