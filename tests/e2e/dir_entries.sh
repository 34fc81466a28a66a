#!/usr/bin/env bash
# Directory entries (dir + pattern + recursive, Litestream 0.5 syntax): every
# SQLite file matching under dir is replicated to its own replica path (the
# entry's joined with the file's path relative to dir); non-SQLite files,
# non-matching names and files below a non-recursive dir are not; `databases`
# lists what was found; restore takes a tenant's path; SIGHUP picks up a new
# tenant and a dir that did not exist at start.
source "$SRCDIR/tests/lib/common.sh"

mkdb() { # mkdb PATH ROWS: a WAL database written by the sqlite3 CLI
  mkdir -p "$(dirname "$1")"
  sqlite3 "$1" "PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB);" >/dev/null ||
    fail "cannot create $1"
  add_rows "$1" "$2"
}
add_rows() { # add_rows PATH N
  sqlite3 "$1" "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s
    WHERE i < $2) INSERT INTO t(v) SELECT randomblob(200) FROM s;" ||
    fail "cannot write $1"
}

TEN=$T/tenants
FLAT=$T/flat
mkdb "$TEN/top.db" 10
mkdb "$TEN/acme/app.db" 20
mkdb "$TEN/beta/deep/b.db" 30
mkdb "$TEN/skip.sqlite" 5 # pattern does not match
printf 'not a database, just a file named like one\n' >"$TEN/junk.db"
mkdb "$FLAT/x.sqlite" 40
mkdb "$FLAT/sub/y.sqlite" 5 # below a non-recursive dir

cat >"$T/sluice.yml" <<YML
dbs:
  - dir: $TEN
    pattern: "*.db"
    recursive: true
    replica:
      url: file://$T/rep
      sync-interval: 100ms
  - dir: $FLAT
    pattern: "*.sqlite"
    watch: true
    replicas:
      - path: $T/rep-flat
        sync-interval: 100ms
  - dir: $T/later
    pattern: "*.db"
    replica:
      path: $T/rep-later
      sync-interval: 100ms
YML

# databases: every database found, sorted per entry, and its replicas.
"$SLUICE" databases -config "$T/sluice.yml" >"$T/dbs.out" 2>"$T/dbs.err" ||
  fail "databases failed: $(cat "$T/dbs.err")"
cat >"$T/dbs.want" <<EOF
path                      replicas
$TEN/acme/app.db     file
$TEN/beta/deep/b.db  file
$TEN/top.db          file
$FLAT/x.sqlite          file
EOF
# (the log goes to stdout too, as Litestream's)
grep -v '^time=' "$T/dbs.out" | awk 'NR > 1 {print $1, $2}' >"$T/dbs.got"
awk 'NR > 1 {print $1, $2}' "$T/dbs.want" >"$T/dbs.exp"
cmp -s "$T/dbs.got" "$T/dbs.exp" ||
  { diff "$T/dbs.got" "$T/dbs.exp" >&2; fail "databases output"; }
cat "$T/dbs.out" "$T/dbs.err" | grep -q "dir $T/later does not exist yet" ||
  fail "missing dir not reported by databases"

sluice_start -config "$T/sluice.yml"
for r in rep/top.db rep/acme/app.db rep/beta/deep/b.db rep-flat/x.sqlite; do
  wait_until 20 test -d "$T/$r/generations" || fail "$r not replicated"
done
[ "$(grep -c "dir $T/later does not exist yet" "$T/sluice.log")" -eq 1 ] ||
  fail "missing dir not reported once"

# Writes to several tenants while replicating.
add_rows "$TEN/acme/app.db" 100
add_rows "$TEN/beta/deep/b.db" 50
add_rows "$FLAT/x.sqlite" 25

# A new tenant and the missing dir appear; SIGHUP picks both up.
mkdb "$TEN/gamma/g.db" 15
mkdb "$T/later/l.db" 12
kill -HUP "$SLUICE_PID"
wait_until 20 test -d "$T/rep/gamma/g.db/generations" ||
  fail "tenant added before SIGHUP not replicated"
wait_until 20 test -d "$T/rep-later/l.db/generations" ||
  fail "dir created before SIGHUP not replicated"
add_rows "$TEN/gamma/g.db" 7
add_rows "$TEN/top.db" 3
sluice_stop

# Nothing else was replicated.
[ ! -e "$T/rep/junk.db" ] || fail "a non-SQLite file was replicated"
[ ! -e "$T/rep/skip.sqlite" ] || fail "a non-matching file was replicated"
[ ! -e "$T/rep-flat/sub" ] || fail "a file below a non-recursive dir was replicated"
n=$(find "$T/rep" "$T/rep-flat" "$T/rep-later" -type d -name generations | wc -l)
[ "$n" -eq 6 ] || fail "$n replicas, want 6"

# Restore each tenant by its path (config lookup) and check it.
i=0
for db in "$TEN/top.db" "$TEN/acme/app.db" "$TEN/beta/deep/b.db" \
  "$TEN/gamma/g.db" "$FLAT/x.sqlite" "$T/later/l.db"; do
  i=$((i + 1))
  out=$T/restored-$i.db
  "$SLUICE" restore -config "$T/sluice.yml" -o "$out" "$db" \
    >"$T/restore.log" 2>&1 || fail "restore of $db failed: $(cat "$T/restore.log")"
  assert_same_db "$db" "$out"
  gens=$("$SLUICE" generations -config "$T/sluice.yml" "$db" | tail -n +2 | wc -l)
  [ "$gens" -eq 1 ] || fail "$db has $gens generations, want 1"
done
[ "$(rows "$T/restored-2.db")" -eq 120 ] || fail "acme rows"
[ "$(rows "$T/restored-4.db")" -eq 22 ] || fail "gamma rows"

# The replica path is the entry's joined with the relative path.
"$SLUICE" restore -o "$T/by-url.db" "file://$T/rep/beta/deep/b.db" \
  >/dev/null 2>&1 || fail "restore from file://$T/rep/beta/deep/b.db failed"
assert_same_db "$TEN/beta/deep/b.db" "$T/by-url.db"

# A tenant lost on this host restores from its path under the dir.
mv "$TEN/acme/app.db" "$T/app-moved.db"
rm -f "$TEN/acme/app.db-wal" "$TEN/acme/app.db-shm"
"$SLUICE" restore -config "$T/sluice.yml" "$TEN/acme/app.db" \
  >"$T/restore.log" 2>&1 || fail "restore of a lost tenant failed: $(cat "$T/restore.log")"
assert_same_db "$T/app-moved.db" "$TEN/acme/app.db"

# A database not under any entry is still an error.
"$SLUICE" replicas -config "$T/sluice.yml" "$TEN/junk.db" >/dev/null 2>&1 &&
  fail "replicas accepted a non-SQLite file"

# config check sees the databases found.
"$SLUICE" config check -config "$T/sluice.yml" >"$T/check.out" 2>&1 ||
  fail "config check failed: $(cat "$T/check.out")"
grep -q "^db: $TEN/gamma/g.db$" "$T/check.out" || fail "config check: $(cat "$T/check.out")"
grep -q "^dir: $TEN (pattern \*.db, recursive)$" "$T/check.out" ||
  fail "config check: $(cat "$T/check.out")"

# Two entries matching one file: a config error naming both lines.
cat >>"$T/sluice.yml" <<YML
  - path: $TEN/top.db
    replica:
      path: $T/rep-dup
YML
"$SLUICE" databases -config "$T/sluice.yml" >"$T/dup.err" 2>&1 &&
  fail "two entries matching one file accepted"
grep -q "$T/sluice.yml:19: dbs: database $TEN/top.db is matched by two entries (lines 2 and 19)" \
  "$T/dup.err" || fail "duplicate match message: $(cat "$T/dup.err")"
echo "PASS"
