#!/usr/bin/env bash
# A configured database that does not exist yet (a fresh volume, a pod
# before the application created its database) has nothing pending:
# stopping exits 0 at once instead of waiting for shutdown-timeout, with
# and without -exec, and a database that does exist beside it is still
# uploaded in full.
source "$SRCDIR/tests/lib/common.sh"

cat >"$T/sluice.yml" <<YML
shutdown-timeout: 60s
dbs:
  - path: $T/missing.db
    replicas:
      - url: file://$T/replica-missing
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 1m
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null

# secs_since T0_NS
secs_since() { echo $(( ($(date +%s%N) - $1) / 1000000000 )); }

# 1. SIGTERM while one database is missing and the other has writes that
#    only the final sync uploads (sync-interval 1m).
sluice_start -config "$T/sluice.yml"
wait_until 20 grep -q 'waiting for database file to be created' "$T/sluice.log" ||
  fail "missing database not reported"
wait_until 20 test -d "$T/replica/generations" || fail "no generation uploaded"
"$SQLWRITER" -db "$T/app.db" -n 300 >/dev/null
t0=$(date +%s%N)
sluice_stop # checks exit status 0
took=$(secs_since "$t0")
[ "$took" -lt 20 ] || fail "stopping took ${took}s (shutdown-timeout is 60s)"
grep -q 'shutdown timeout reached' "$T/sluice.log" && fail "shutdown timed out"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "SIGTERM with a missing database: exit 0 after ${took}s"

# 2. -exec: the child exits, sluice follows at once with its exit code.
t0=$(date +%s%N)
rc=0
timeout 50 "$SLUICE" replicate -config "$T/sluice.yml" -exec "sh -c 'exit 3'" \
  >>"$T/sluice.log" 2>&1 || rc=$?
took=$(secs_since "$t0")
[ "$rc" -eq 3 ] || fail "-exec: sluice exited $rc, want the child's 3"
[ "$took" -lt 20 ] || fail "-exec: sluice took ${took}s after the child exited"
echo "-exec with a missing database: exit $rc after ${took}s"

# 3. -exec whose child creates the missing database: replicated in full.
rc=0
timeout 50 "$SLUICE" replicate -config "$T/sluice.yml" \
  -exec "$SQLWRITER -db $T/missing.db -n 200" >>"$T/sluice.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || fail "-exec creating the database: exit $rc"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored2.db" \
  "$T/missing.db" >"$T/restore.log" 2>&1 ||
  { cat "$T/restore.log"; fail "restore of the new database failed"; }
assert_same_db "$T/missing.db" "$T/restored2.db"
echo "-exec child created the database: $(rows "$T/restored2.db") rows restored"
echo PASS
