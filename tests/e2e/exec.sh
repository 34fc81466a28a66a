#!/usr/bin/env bash
# replicate -exec: the child's exit code becomes sluice's (128+signal when
# it was killed), SIGTERM to sluice reaches the child, and the final sync
# happens after the child exits whatever its status, so the replica holds
# the child's last write.  The replica's sync-interval is long, so only the
# final sync can upload the writes that follow the first one.
source "$SRCDIR/tests/lib/common.sh"

DB=$T/app.db
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $DB
    replicas:
      - url: file://$T/replica
        sync-interval: 1m
YML
"$SQLWRITER" -db "$DB" -n 1 >/dev/null

# run_exec EXPECTED_RC CMD: runs sluice with -exec CMD in the foreground.
run_exec() {
  local want=$1 got=0
  shift
  timeout 60 "$SLUICE" replicate -config "$T/sluice.yml" -exec "$1" \
    >>"$T/sluice.log" 2>&1 || got=$?
  [ "$got" -eq "$want" ] || fail "-exec $1: sluice exited $got, want $want"
}

restore_check() { # what
  rm -f "$T/restored.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$DB" \
    >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "$1: restore"; }
  assert_same_db "$DB" "$T/restored.db"
}

# Exit codes, with both kinds of quoting in the command line.
run_exec 0 "true"
run_exec 3 "sh -c 'exit 3'"
run_exec 4 "sh -c \"exit 4\""
run_exec 137 "sh -c 'kill -KILL \$\$'"
run_exec 143 "sh -c 'kill -TERM \$\$'"
echo "exit codes: ok"

# A missing program or a command line that does not parse: a clear error,
# a clean shutdown and exit 1 (it used to crash with the databases open).
for cmd in "$T/no-such-program" "sh -c 'unterminated"; do
  rc=0
  "$SLUICE" replicate -config "$T/sluice.yml" -exec "$cmd" \
    >"$T/bad-exec.log" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] || { cat "$T/bad-exec.log"; fail "-exec $cmd: exit $rc, want 1"; }
  grep -Eq "cannot (start subprocess|parse -exec command)" "$T/bad-exec.log" ||
    { cat "$T/bad-exec.log"; fail "-exec $cmd: no clear error"; }
  grep -q "sluice shut down" "$T/bad-exec.log" ||
    { cat "$T/bad-exec.log"; fail "-exec $cmd: no clean shutdown"; }
done

# A child that writes and fails: the final sync still uploads its writes.
cat >"$T/fail.sh" <<SH
"$SQLWRITER" -db "$DB" -n 300 >/dev/null || exit 9
exit 1
SH
run_exec 1 "sh $T/fail.sh"
[ "$(rows "$DB")" -ge 301 ] || fail "child did not write"
restore_check "child exiting 1"
echo "final sync after exit 1: $(rows "$T/restored.db") rows restored"

# SIGTERM to sluice goes to the child; the child writes in its handler and
# exits 7; sluice exits 7 after uploading that write.
cat >"$T/trap.sh" <<SH
trap '"$SQLWRITER" -db "$DB" -n 50 >/dev/null; exit 7' TERM
echo \$\$ >"$T/child.pid"
while :; do sleep 0.05; done
SH
rm -f "$T/child.pid"
sluice_start -config "$T/sluice.yml" -exec "sh $T/trap.sh"
wait_until 10 test -s "$T/child.pid" || fail "child did not start"
before=$(rows "$DB")
kill -TERM "$SLUICE_PID"
rc=0
wait "$SLUICE_PID" || rc=$?
[ "$rc" -eq 7 ] || fail "after SIGTERM: sluice exited $rc, want the child's 7"
[ "$(rows "$DB")" -eq $((before + 50)) ] ||
  fail "the child's TERM handler did not run"
kill -0 "$(cat "$T/child.pid")" 2>/dev/null && fail "child still running"
grep -q "subprocess exited: code=7" "$T/sluice.log" ||
  fail "child exit not logged"
restore_check "SIGTERM forwarded"

# A child that ignores nothing: SIGTERM kills it, sluice exits 143.
cat >"$T/plain.sh" <<SH
echo \$\$ >"$T/child.pid"
exec sleep 60
SH
rm -f "$T/child.pid"
sluice_start -config "$T/sluice.yml" -exec "sh $T/plain.sh"
wait_until 10 test -s "$T/child.pid" || fail "child did not start"
"$SQLWRITER" -db "$DB" -n 20 >/dev/null
kill -TERM "$SLUICE_PID"
rc=0
wait "$SLUICE_PID" || rc=$?
[ "$rc" -eq 143 ] || fail "child killed by SIGTERM: sluice exited $rc, want 143"
restore_check "child killed by SIGTERM"
echo PASS
