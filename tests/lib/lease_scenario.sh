# shellcheck shell=bash
# The README's "Migrate to a new server" runbook run as written, against
# one replica path shared by three "hosts" (three databases, three meta
# directories, three sluice processes), with a short lease TTL.  Sourced
# by tests/e2e/lease_*.sh after common.sh; the caller defines
# shared_replica NAME (the YAML of the shared replica, indented for a
# replica list) and calls lease_scenario.
#
#  1. host a replicates; host b restores (same rows, integrity ok) and
#     starts: b refuses the shared path with one ERROR line naming a's
#     owner and the expiry, while its own local replica runs; b's writes
#     are in no restore, a's are.
#  2. a stops cleanly: its lease is released, b takes the path, and every
#     restore holds b's writes.
#  3. host c restores and starts with -force-takeover: b is fenced within
#     one renewal interval and says so; b's later writes are in no restore.
#  4. c is killed -9 and restarted at once: it resumes its own lease.
#  5. c is killed -9 again: b takes over when the lease expires, and the
#     restore holds all of b's writes.
# (lease-idle-ttl: 0 here; e2e/lease_idle covers idle leases.)
TTL=5s
# shellcheck disable=SC2034 # (set and read through eval "PID_$h")
PID_a='' PID_b='' PID_c=''

host_config() { # host
  local h=$1
  mkdir -p "$D/$h"
  {
    cat <<YML
dbs:
  - path: $D/$h/app.db
    replicas:
YML
    shared_replica shared
    echo "        sync-interval: 100ms"
    echo "        lease-ttl: $TTL"
    # Renewals at the TTL even when idle, so that a fenced owner notices at
    # once and a killed one's lease lapses after the TTL: idle leases
    # (lease-idle-ttl) have their own test, e2e/lease_idle.
    echo "        lease-idle-ttl: 0"
    if [ "$h" = b ]; then
      cat <<YML
      - name: local
        path: $D/b-local
        sync-interval: 100ms
YML
    fi
  } >"$D/$h.yml"
}

host_start() { # host [args...]
  local h=$1; shift
  "$SLUICE" replicate -config "$D/$h.yml" "$@" >>"$D/$h.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$h=$!"
}

host_stop() { # host
  local p rc=0
  p=$(eval "echo \$PID_$1")
  kill -TERM "$p"
  wait "$p" || rc=$?
  [ "$rc" = 0 ] || { tail -20 "$D/$1.log"; fail "$KIND: sluice on host $1 exited $rc"; }
}

host_kill9() { # host
  local p
  p=$(eval "echo \$PID_$1")
  kill -9 "$p"
  wait "$p" 2>/dev/null
}

# restore_shared OUT: restores the shared replica (through a's config).
restore_shared() {
  rm -f "$1"
  "$SLUICE" restore -config "$D/a.yml" -replica shared -o "$1" "$D/a/app.db" \
    >"$1.log" 2>&1
}

# restore_equals DB: the shared replica restores to DB's exact content.
restore_equals() {
  restore_shared "$D/check.db" || return 1
  [ "$(sqlite3 "$D/check.db" 'PRAGMA integrity_check')" = ok ] || return 1
  [ "$(sqlite3 "$1" .dump)" = "$(sqlite3 "$D/check.db" .dump)" ]
}

expect_restore() { # db what
  wait_until 30 restore_equals "$1" ||
    { tail -5 "$D/check.db.log"; tail -20 "$D"/*.log; fail "$KIND: the restore does not hold $2"; }
  assert_same_db "$1" "$D/check.db"
}

count() { # pattern file
  grep -c -- "$1" "$2" 2>/dev/null || true
}

# held HOST [N]: the shared replica's lease was taken at least N (1) times.
held() {
  [ "$(grep 'held (owner' "$D/$1.log" | grep -c 'replica=shared')" -ge "${2:-1}" ]
}

lease_scenario() {
  KIND=$1
  D=$T/$KIND
  mkdir -p "$D"
  for h in a b c; do host_config $h; done

  # 1. The old host replicates, the new host restores and starts.
  "$SQLWRITER" -db "$D/a/app.db" -n 20 >/dev/null
  host_start a
  wait_until 20 held a || fail "$KIND: host a took no lease"
  expect_restore "$D/a/app.db" "host a's rows"
  "$SLUICE" restore -config "$D/b.yml" -replica shared "$D/b/app.db" >"$D/restore-b.log" 2>&1 ||
    { cat "$D/restore-b.log"; fail "$KIND: runbook restore on host b failed"; }
  assert_same_db "$D/a/app.db" "$D/b/app.db"
  host_start b
  wait_until 20 grep -q 'is leased by host' "$D/b.log" ||
    { cat "$D/b.log"; fail "$KIND: host b was not refused"; }
  local line
  line=$(grep 'is leased by host' "$D/b.log")
  echo "$KIND refused: $(echo "$line" | sed 's/.*msg="//' | cut -c1-200)"
  echo "$line" | grep -q "pid $PID_a" || fail "$KIND: the refusal does not name host a's pid $PID_a"
  echo "$line" | grep -q 'level=ERROR' || fail "$KIND: the refusal is not an error"
  echo "$line" | grep -Eq 'until [0-9-]{10}T[0-9:]{8}Z' || fail "$KIND: the refusal has no expiry"
  "$SQLWRITER" -db "$D/b/app.db" -n 30 >/dev/null # b's fork: must not reach the replica
  "$SQLWRITER" -db "$D/a/app.db" -n 10 >/dev/null
  # b's own replica goes on.
  wait_until 20 sh -c "\"$SLUICE\" restore -o \"$D/local.db\" \"file://$D/b-local\" >/dev/null 2>&1 &&
    [ \"\$(sqlite3 \"$D/local.db\" 'select count(*) from t')\" = \"\$(sqlite3 \"$D/b/app.db\" 'select count(*) from t')\" ] || { rm -f \"$D/local.db\"; false; }" ||
    fail "$KIND: host b's other replica stopped too"
  expect_restore "$D/a/app.db" "host a's writes (b refused)"
  [ "$(count 'is leased by host' "$D/b.log")" = 1 ] || fail "$KIND: the refusal was logged more than once"
  held b && fail "$KIND: host b took a live lease"

  # 2. The old host stops: the new one owns the path.
  host_stop a
  grep -q "lease on .* released" "$D/a.log" || fail "$KIND: clean stop did not release the lease"
  wait_until 20 held b || fail "$KIND: host b did not take the released lease"
  "$SQLWRITER" -db "$D/b/app.db" -n 10 >/dev/null
  expect_restore "$D/b/app.db" "host b's writes after a stopped"

  # 3. A third host forces the lease: b is fenced.
  "$SLUICE" restore -config "$D/c.yml" -replica shared "$D/c/app.db" >"$D/restore-c.log" 2>&1 ||
    { cat "$D/restore-c.log"; fail "$KIND: restore on host c failed"; }
  assert_same_db "$D/b/app.db" "$D/c/app.db"
  local t0 t1
  t0=$(date +%s%N)
  host_start c -force-takeover
  wait_until 20 held c || fail "$KIND: -force-takeover did not take the lease"
  grep -q 'forced takeover from host' "$D/c.log" || fail "$KIND: host c did not say it forced the lease"
  wait_until 20 grep -q 'was taken over by' "$D/b.log" || fail "$KIND: host b did not notice the takeover"
  t1=$(date +%s%N)
  echo "$KIND fenced after $(( (t1 - t0) / 1000000 )) ms: $(grep 'was taken over by' "$D/b.log" | sed 's/.*msg="//' | cut -c1-160)"
  "$SQLWRITER" -db "$D/b/app.db" -n 15 >/dev/null # fenced: not in the restore below
  "$SQLWRITER" -db "$D/c/app.db" -n 15 >/dev/null
  expect_restore "$D/c/app.db" "host c's writes after the forced takeover"

  # 4. kill -9 and restart at once: the same owner resumes its lease.
  host_kill9 c
  host_start c
  wait_until 20 grep -q 'resuming our own' "$D/c.log" || { tail "$D/c.log"; fail "$KIND: restarted host c did not resume its lease"; }
  "$SQLWRITER" -db "$D/c/app.db" -n 5 >/dev/null
  expect_restore "$D/c/app.db" "host c's writes after its restart"

  # 5. kill -9 again: b waits for the expiry, then takes over.
  host_kill9 c
  wait_until 30 held b 2 ||
    { tail "$D/b.log"; fail "$KIND: host b did not take the expired lease"; }
  grep -q '(expired)' "$D/b.log" || fail "$KIND: host b took the lease before it expired"
  "$SQLWRITER" -db "$D/b/app.db" -n 5 >/dev/null
  expect_restore "$D/b/app.db" "host b's writes after c was killed"
  host_stop b
  grep -q "lease on .* released" "$D/b.log" || fail "$KIND: b did not release"
  # Listings and the restore ignore lock.json; generations: a's, b's, c's.
  restore_shared "$D/final.db" || fail "$KIND: final restore"
  assert_same_db "$D/b/app.db" "$D/final.db"
  local gens
  gens=$("$SLUICE" generations -config "$D/a.yml" -replica shared "$D/a/app.db" | tail -n +2 | wc -l)
  [ "$gens" = 3 ] || { "$SLUICE" generations -config "$D/a.yml" "$D/a/app.db"; fail "$KIND: $gens generations, expected 3 (a, b, c)"; }
  echo "$KIND: ok ($gens generations, final $(rows "$D/final.db") rows = host b)"
}
