#!/usr/bin/env bash
# Bad inputs get a clear one-line error naming the file, and the daemon
# keeps the rest running: a broken YAML, a missing config, a missing
# database (replicated once it appears), an unwritable replica directory.
source "$SRCDIR/tests/lib/common.sh"

# Broken YAML: exit 1, the message names the file and line.
printf 'dbs:\n  - path: /x\n    replicas: [\n' >"$T/broken.yml"
if "$SLUICE" replicate -config "$T/broken.yml" >"$T/out" 2>&1; then
  fail "broken config accepted"
fi
grep -q "$T/broken.yml:[0-9]" "$T/out" ||
  { cat "$T/out"; fail "error does not name file:line"; }

# Missing config file.
"$SLUICE" replicate -config "$T/nope.yml" >"$T/out" 2>&1 &&
  fail "missing config accepted"
grep -q "config file not found: $T/nope.yml" "$T/out" ||
  { cat "$T/out"; fail "missing config message"; }

# A malformed age key: the replica is refused with the key's place in the
# config, nothing is uploaded (never in plaintext), the key is not echoed.
cat >"$T/age.yml" <<YML
dbs:
  - path: $T/age.db
    replicas:
      - url: file://$T/age-replica
        age:
          recipients: [age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq]
YML
"$SLUICE" replicate -config "$T/age.yml" >"$T/out" 2>&1 && fail "bad age recipient accepted"
grep -q "age.recipients\[0\]: line 1: malformed recipient" "$T/out" ||
  { cat "$T/out"; fail "age recipient message"; }
grep -q "age1qqqq" "$T/out" && fail "the recipient is echoed"
[ ! -e "$T/age-replica" ] || fail "something was uploaded with a bad age section"
BADKEY=AGE-SECRET-KEY-1EGTZVFFV20835NWYV6270LXYVK2VKNX2MMDKWYKLMGR48UAWX40Q2P2LM1
sed -i "s|recipients: .*|identities: [$BADKEY]|" "$T/age.yml"
"$SLUICE" replicate -config "$T/age.yml" >"$T/out" 2>&1 && fail "bad age identity accepted"
grep -q "age.identities\[0\]: line 1: malformed secret key" "$T/out" ||
  { cat "$T/out"; fail "age identity message"; }
grep -q "EGTZVFFV" "$T/out" && fail "the secret key is echoed"
[ ! -e "$T/age-replica" ] || fail "something was uploaded with a bad age section"

# No database at all: the daemon says so, idles (no busy loop) and stops
# cleanly on SIGTERM.
printf 'dbs: []\n' >"$T/empty.yml"
sluice_start -config "$T/empty.yml"
wait_until 5 grep -q "no databases specified" "$T/sluice.log" ||
  fail "empty config not reported"
sleep 0.5
ticks=$(awk '{print $14 + $15}' "/proc/$SLUICE_PID/stat")
[ "$ticks" -lt 20 ] || fail "idle daemon with no database burns CPU ($ticks ticks)"
sluice_stop

# A healthy database, a missing one and one whose replica cannot be
# written: the healthy one replicates, the missing one is picked up when it
# appears, the broken replica is reported with its path.
touch "$T/notadir"
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/good.db
    replicas:
      - url: file://$T/good-replica
        sync-interval: 100ms
  - path: $T/later.db
    replicas:
      - url: file://$T/later-replica
        sync-interval: 100ms
  - path: $T/bad.db
    replicas:
      - url: file://$T/notadir/replica
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/good.db" -n 10 >/dev/null
"$SQLWRITER" -db "$T/bad.db" -n 10 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 grep -q "notadir" "$T/sluice.log" ||
  fail "unwritable replica not reported"
grep "notadir" "$T/sluice.log" | head -1 | grep -q "$T/notadir" ||
  fail "error does not name the path"
grep -q "waiting for database file" "$T/sluice.log" ||
  fail "missing database not reported"
"$SQLWRITER" -db "$T/later.db" -n 20 >/dev/null
"$SQLWRITER" -db "$T/good.db" -n 20 >/dev/null
wait_until 10 test -d "$T/later-replica/generations" ||
  fail "database created after start not replicated"
sleep 0.5
kill -0 "$SLUICE_PID" || fail "daemon died"
sluice_stop
for db in good later; do
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/$db-restored.db" \
    "$T/$db.db" >/dev/null 2>&1 || fail "restore of $db failed"
  assert_same_db "$T/$db.db" "$T/$db-restored.db"
done
echo PASS
