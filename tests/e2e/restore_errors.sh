#!/usr/bin/env bash
# Restore failures: each one exits 1 with a one-line message naming the
# object or the problem, and leaves nothing behind; the flags that turn a
# condition into a clean exit 0 do so.
. "$(dirname "$0")/../lib/common.sh"

[ -x "$SLUICE" ] || skip "no sluice binary at $SLUICE"
command -v lz4 >/dev/null || skip "no lz4 CLI"

SRC=$FIXTURES/basic
GEN=6c0f537145dc1153
WAL=generations/$GEN/wal
n=0

# fresh: a new copy of the basic replica in $r.
fresh() {
  n=$((n + 1))
  r=$T/rep$n
  apply_manifest "$SRC" "$r"
}

# expect_fail WHAT MESSAGE ARGS...: restore must exit 1, log one error line
# holding MESSAGE (fixed string) and create nothing in $T/out.
expect_fail() {
  local what=$1 msg=$2 rc=0
  shift 2
  rm -rf "$T/out"
  mkdir -p "$T/out"
  "$SLUICE" restore "$@" >"$T/stdout" 2>"$T/stderr" || rc=$?
  [ "$rc" -eq 1 ] || { cat "$T/stderr" >&2; fail "$what: exit $rc, want 1"; }
  grep -q -F -- "$msg" "$T/stderr" ||
    { cat "$T/stderr" >&2; fail "$what: message lacks: $msg"; }
  [ "$(grep -c 'level=ERROR' "$T/stderr")" -eq 1 ] ||
    { cat "$T/stderr" >&2; fail "$what: want exactly one error line"; }
  [ -z "$(ls -A "$T/out")" ] || fail "$what: left behind: $(ls -A "$T/out")"
}

# expect_ok WHAT ARGS...: restore to $T/out/db must succeed with the
# source's rows.
expect_ok() {
  local what=$1
  shift
  rm -rf "$T/out"
  "$SLUICE" restore -o "$T/out/db" "$@" 2>"$T/stderr" ||
    { cat "$T/stderr" >&2; fail "$what: failed"; }
  assert_same_db "$SRC/source.db" "$T/out/db"
}

fresh
expect_ok "intact replica" "file://$r"

# A missing segment in the middle of an index: the next one is out of place.
fresh
rm "$r/$WAL/00000000_00004080.wal.lz4"
expect_fail "missing segment" \
  "restore: $WAL/00000000_00004080.wal.lz4: not contiguous: expected offset 16512, got 61832" \
  -o "$T/out/db" "file://$r"

# A missing first segment of an index.
fresh
rm "$r/$WAL/00000001_00000000.wal.lz4"
expect_fail "missing first segment" \
  "restore: $WAL/00000001_00000000.wal.lz4: not contiguous: expected offset 0, got 4152" \
  -o "$T/out/db" "file://$r"

# A whole index missing.
fresh
rm "$r/$WAL"/00000001_*.wal.lz4
expect_fail "missing index" \
  "restore: $WAL/00000001_00000000.wal.lz4: missing: WAL index 00000001 has no segments" \
  -o "$T/out/db" "file://$r"

# A stray segment with a huge index (ffffffff): the gap is reported at the
# first missing index, without allocating per missing index (this used to
# abort with "out of memory allocating 16080357556224 bytes").
fresh
head -c 1000 /dev/urandom >"$r/$WAL/ffffffff_00000000.wal.lz4"
expect_fail "stray huge index" \
  "restore: $WAL/00000003_00000000.wal.lz4: missing: WAL index 00000003 has no segments" \
  -o "$T/out/db" "file://$r"

# A segment under the wrong offset (non-contiguous).
fresh
mv "$r/$WAL/00000001_00001038.wal.lz4" "$r/$WAL/00000001_00002050.wal.lz4"
expect_fail "non-contiguous segment" \
  "restore: $WAL/00000001_00001038.wal.lz4: not contiguous: expected offset 4152, got 8272" \
  -o "$T/out/db" "file://$r"

# Flipped bytes in the compressed data.
fresh
f=$r/$WAL/00000000_0000f188.wal.lz4
printf '\xff\xff\xff\xff' | dd of="$f" bs=1 seek=5000 conv=notrunc status=none
expect_fail "corrupt segment (LZ4)" \
  "restore: $WAL/00000000_0000f188.wal.lz4: corrupt LZ4 frame" \
  -o "$T/out/db" "file://$r"

# Valid LZ4 around a WAL frame with a flipped byte.
fresh
f=$r/$WAL/00000000_00004080.wal.lz4
lz4 -d -q -c "$f" >"$T/seg"
printf '\x5a' | dd of="$T/seg" bs=1 seek=$((4120 + 24 + 100)) conv=notrunc status=none
lz4 -q -f -c "$T/seg" >"$f"
expect_fail "corrupt WAL frame" \
  "restore: $WAL/00000000_00004080.wal.lz4: WAL frame at offset $((16512 + 4120)) fails its salt or checksum check" \
  -o "$T/out/db" "file://$r"

# A truncated segment (valid LZ4, last frame cut): the next one is out of
# place.
fresh
f=$r/$WAL/00000000_00004080.wal.lz4
lz4 -d -q -c "$f" | head -c $((45320 - 4120)) | lz4 -q -c >"$T/seg.lz4"
cp "$T/seg.lz4" "$f"
expect_fail "truncated segment" \
  "restore: $WAL/00000000_0000e170.wal.lz4: not contiguous: expected offset 57712, got 61832" \
  -o "$T/out/db" "file://$r"

# Missing snapshot.
fresh
rm "$r/generations/$GEN/snapshots/00000000.snapshot.lz4"
expect_fail "missing snapshot" \
  "restore: generations/$GEN/snapshots/: no snapshots available" \
  -o "$T/out/db" "file://$r"

# Corrupt snapshot.
fresh
printf 'garbage' >"$r/generations/$GEN/snapshots/00000000.snapshot.lz4"
expect_fail "corrupt snapshot" \
  "restore: generations/$GEN/snapshots/00000000.snapshot.lz4: corrupt LZ4 frame" \
  -o "$T/out/db" "file://$r"

# Output exists: refused, untouched.
fresh
rm -rf "$T/out" && mkdir -p "$T/out" && echo keep >"$T/out/db"
rc=0
"$SLUICE" restore -o "$T/out/db" "file://$r" 2>"$T/stderr" || rc=$?
[ $rc -eq 1 ] || fail "output exists: exit $rc"
grep -q -F "cannot restore, output path already exists: $T/out/db" "$T/stderr" ||
  fail "output exists: message"
[ "$(cat "$T/out/db")" = keep ] || fail "output exists: file was changed"
[ "$(ls -A "$T/out")" = db ] || fail "output exists: left behind $(ls -A "$T/out")"

# -if-db-not-exists: exit 0, logged, untouched.
"$SLUICE" restore -if-db-not-exists -o "$T/out/db" "file://$r" 2>"$T/stderr" ||
  fail "-if-db-not-exists: exit $?"
grep -q 'database already exists, skipping' "$T/stderr" || fail "-if-db-not-exists: log"
[ "$(cat "$T/out/db")" = keep ] || fail "-if-db-not-exists: file was changed"
# ... and restores when the database is absent.
rm "$T/out/db"
"$SLUICE" restore -if-db-not-exists -o "$T/out/db" "file://$r" 2>"$T/stderr" ||
  fail "-if-db-not-exists with no database failed"
assert_same_db "$SRC/source.db" "$T/out/db"

# Nothing on the replica: error, or exit 0 with -if-replica-exists.
mkdir -p "$T/empty"
expect_fail "empty replica" "no matching backups found" -o "$T/out/db" "file://$T/empty"
expect_fail "unknown generation" "no matching backups found" \
  -generation ffffffffffffffff -o "$T/out/db" "file://$r"
rm -rf "$T/out"
"$SLUICE" restore -if-replica-exists -o "$T/out/db" "file://$T/empty" 2>"$T/stderr" ||
  fail "-if-replica-exists: exit $?"
grep -q 'no matching backups found' "$T/stderr" || fail "-if-replica-exists: log"
[ ! -e "$T/out/db" ] || fail "-if-replica-exists created a database"

# Config mode: -replica picks among the database's replicas.
fresh
mkdir -p "$T/cfgempty"
cat >"$T/cfg.yml" <<YML
dbs:
  - path: $T/cfgdb/app.db
    replicas:
      - name: a
        type: file
        path: $T/cfgempty
      - name: b
        type: file
        path: $r
YML
rm -rf "$T/cfgdb"
"$SLUICE" restore -config "$T/cfg.yml" "$T/cfgdb/app.db" >"$T/stdout" 2>&1 ||
  { cat "$T/stdout" >&2; fail "config mode: restore failed"; }
assert_same_db "$SRC/source.db" "$T/cfgdb/app.db"
grep -q 'replica=b' "$T/stdout" || fail "config mode: not restored from replica b"
rm -rf "$T/cfgdb"
"$SLUICE" restore -config "$T/cfg.yml" -replica b -o "$T/cfgdb/x.db" "$T/cfgdb/app.db" \
  >"$T/stdout" 2>&1 || fail "config mode: -replica b failed"
assert_same_db "$SRC/source.db" "$T/cfgdb/x.db"
for rep in a zzz; do
  rc=0
  "$SLUICE" restore -config "$T/cfg.yml" -replica $rep -o "$T/cfgdb/y.db" "$T/cfgdb/app.db" \
    >"$T/stdout" 2>&1 || rc=$?
  [ $rc -eq 1 ] && grep -q 'no matching backups found' "$T/stdout" ||
    fail "config mode: -replica $rep: exit $rc, $(cat "$T/stdout")"
  "$SLUICE" restore -if-replica-exists -config "$T/cfg.yml" -replica $rep \
    -o "$T/cfgdb/y.db" "$T/cfgdb/app.db" >/dev/null 2>&1 ||
    fail "config mode: -if-replica-exists -replica $rep: exit $?"
done
[ ! -e "$T/cfgdb/y.db" ] || fail "config mode: y.db created"
rc=0
"$SLUICE" restore -config "$T/cfg.yml" "$T/cfgdb/other.db" >"$T/stdout" 2>&1 || rc=$?
[ $rc -eq 1 ] && grep -q "database not found in config: $T/cfgdb/other.db" "$T/stdout" ||
  fail "config mode: unknown database: exit $rc"

# Argument errors.
expect_fail "URL without -o" "output path required" "file://$r"
expect_fail "bad -timestamp" \
  "invalid -timestamp, must specify in ISO 8601 format (e.g. 2000-01-01T00:00:00Z)" \
  -timestamp yesterday -o "$T/out/db" "file://$r"
expect_fail "-index with -timestamp" "cannot specify index & timestamp to restore" \
  -index 1 -timestamp 2026-11-26T14:52:05Z -o "$T/out/db" "file://$r"
expect_fail "bad -index" "invalid hexadecimal format" -index xyz -o "$T/out/db" "file://$r"
expect_fail "-index too large" "invalid hexadecimal format" -index 80000000 -o "$T/out/db" "file://$r"
expect_fail "no argument" "database path or replica URL required" -o "$T/out/db"
expect_fail "two arguments" "too many arguments" -o "$T/out/db" "file://$r" "file://$r"
expect_fail "URL and -config" "cannot specify a replica URL and the -config flag" \
  -config /dev/null -o "$T/out/db" "file://$r"

# Unknown flag and -h: exit 1, usage on stdout.
rc=0
"$SLUICE" restore -bogus "file://$r" >"$T/stdout" 2>"$T/stderr" || rc=$?
[ $rc -eq 1 ] || fail "unknown flag: exit $rc"
grep -q 'flag provided but not defined: -bogus' "$T/stderr" || fail "unknown flag: message"
grep -q 'sluice restore \[arguments\] DB_PATH' "$T/stdout" || fail "unknown flag: usage"
rc=0
"$SLUICE" restore -h >"$T/stdout" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "-h: exit $rc"
grep -q -- '-if-replica-exists' "$T/stdout" || fail "-h: usage lacks flags"
for c in generations snapshots wal; do
  rc=0
  "$SLUICE" $c -h >"$T/stdout" 2>&1 || rc=$?
  [ $rc -eq 1 ] || fail "$c -h: exit $rc"
  grep -q "sluice $c \[arguments\] DB_PATH" "$T/stdout" || fail "$c -h: usage"
done

echo "restore_errors: ok"
