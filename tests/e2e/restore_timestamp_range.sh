#!/usr/bin/env bash
# `restore -timestamp` at the edges of the time range: a time after the last
# upload, however far in the future (past the year 2262 where nanoseconds
# since 1970 leave int64), restores the latest state; a time before the first
# upload (before 1677 too) finds no backups.  Years 2263-2299 used to answer
# "no matching backups found" and 2611 an older state (signed overflow).
. "$(dirname "$0")/../lib/common.sh"

[ -x "$SLUICE" ] || skip "no sluice binary at $SLUICE"

SRC=$FIXTURES/pitr
apply_manifest "$SRC" "$T/rep"
sqlite3 "$SRC/source.db" .dump >"$T/final.sql"

for ts in 2026-11-26T14:52:45Z 2262-04-11T23:47:16Z 2262-04-12T00:00:00Z \
  2263-01-01T00:00:00Z 2299-12-31T23:59:59Z 2611-06-22T07:43:33Z \
  9999-12-31T23:59:59Z 9999-12-31T23:59:59.999999999-23:59; do
  rm -rf "$T/out"
  "$SLUICE" restore -timestamp "$ts" -o "$T/out/db" "file://$T/rep" \
    2>"$T/stderr" || { cat "$T/stderr" >&2; fail "-timestamp $ts: failed"; }
  assert_same_db "$SRC/source.db" "$T/out/db"
  [ "$(rows "$T/out/db")" -eq 240 ] || fail "-timestamp $ts: $(rows "$T/out/db") rows"
done

# A point inside the range still restores that point (t3: 120 rows).
rm -rf "$T/out"
"$SLUICE" restore -timestamp 2026-11-26T14:52:35.591466818Z -o "$T/out/db" \
  "file://$T/rep" 2>"$T/stderr" || { cat "$T/stderr" >&2; fail "t3 failed"; }
[ "$(rows "$T/out/db")" -eq 120 ] || fail "t3: $(rows "$T/out/db") rows, want 120"
[ "$(sqlite3 "$T/out/db" 'PRAGMA integrity_check')" = ok ] || fail "t3 integrity"

for ts in 2000-01-01T00:00:00Z 1677-09-21T00:12:43Z 1000-01-01T00:00:00Z \
  0000-01-01T00:00:00+23:59; do
  rm -rf "$T/out"
  rc=0
  "$SLUICE" restore -timestamp "$ts" -o "$T/out/db" "file://$T/rep" \
    2>"$T/stderr" || rc=$?
  [ "$rc" -eq 1 ] || { cat "$T/stderr" >&2; fail "-timestamp $ts: exit $rc, want 1"; }
  grep -q "no matching backups found" "$T/stderr" ||
    { cat "$T/stderr" >&2; fail "-timestamp $ts: wrong message"; }
  [ ! -e "$T/out/db" ] || fail "-timestamp $ts: left $T/out/db"
done
echo "restore_timestamp_range: ok"
