#!/usr/bin/env bash
# Idle leases (lease-idle-ttl): a path nothing was uploaded to for a whole
# lease-ttl is renewed with the idle TTL, so an idle database costs no
# lease write for idle-ttl/3; a second host is refused until the idle
# expiry (longer, which is safe).  Waking renews at the TTL, a conditional
# write, before the first upload: woken after a -force-takeover, the old
# owner says it was fenced and uploads nothing more to the path (no new
# object in its generation, the restore is the new owner's).  On a file
# replica, then on SFTP (a real OpenSSH server on 127.0.0.1).
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/sshd.sh"
replica_yaml() { # the shared replica, for KIND
  if [ "$KIND" = file ]; then
    echo "        path: $REP"
  else
    cat <<YML
        url: sftp://root@127.0.0.1:$SSHD_PORT$REP
        key-path: $SSHD_KEY
        host-key-path: $SSHD_KNOWN_HOSTS
YML
  fi
}
host_config() { # host
  mkdir -p "$T/$1"
  {
    printf 'dbs:\n  - path: %s\n    replicas:\n      - name: shared\n' "$T/$1/app.db"
    replica_yaml
    cat <<YML
        sync-interval: 100ms
        lease-ttl: 3s
        lease-idle-ttl: 60s
YML
  } >"$T/$1.yml"
}
lock_file() { # the lease as last written
  if [ "$KIND" = file ]; then
    echo "$REP/lock.json"
  else
    echo "$REP/lock.json.d/$(ls "$REP/lock.json.d" | grep -E '^[0-9]{20}$' | sort | tail -1)"
  fi
}
add_rows() { # db n tag
  sqlite3 "$1" "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s WHERE i < $2)
    INSERT INTO t(v) SELECT '$3' || i FROM s;" >/dev/null || fail "cannot write $1"
}
start() { # host [args]
  local h=$1; shift
  "$SLUICE" replicate -config "$T/$h.yml" "$@" >>"$T/$h.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$h=$!"
}
stop() { # host
  local p rc=0
  p=$(eval "echo \$PID_$1")
  kill -TERM "$p"; wait "$p" || rc=$?
  [ $rc = 0 ] || { tail "$T/$1.log"; fail "sluice on $1 exited $rc"; }
}
restore_equals() { # db
  rm -f "$T/check.db"
  "$SLUICE" restore -config "$T/a.yml" -o "$T/check.db" "$T/a/app.db" >/dev/null 2>&1 || return 1
  [ "$(sqlite3 "$T/check.db" 'PRAGMA integrity_check')" = ok ] &&
    [ "$(sqlite3 "$1" .dump)" = "$(sqlite3 "$T/check.db" .dump)" ]
}
field() { # name: from the lease as last written (read again if a newer
  # version replaced it between the listing and the read)
  local _
  for _ in 1 2 3 4 5; do
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
      "$(lock_file)" "$1" 2>/dev/null && return 0
  done
  return 1
}
is_idle() { [ "$(field idle 2>/dev/null)" = True ]; }

run_case() { # kind
KIND=$1
T0=$T
T=$T0/$KIND
REP=$T/rep
mkdir -p "$T"
for h in a b c; do host_config $h; done

# 1. Host a replicates, then goes idle.
add_rows "$T/a/app.db" 10 a
start a
wait_until 20 grep -q 'held (owner' "$T/a.log" || fail "a took no lease"
wait_until 30 restore_equals "$T/a/app.db" || fail "a's rows not replicated"
wait_until 20 is_idle || { cat "$(lock_file)"; fail "the lease was not renewed as idle"; }
# Quiet for 6 s (two lease-ttls: six renewals at lease-ttl/3) and idle
# throughout.  Polled: the database's own last work (its idle checkpoint,
# a last segment) can wake the lease once more after its first idle write.
quiet() {
  is_idle || return 1
  seq0=$(field seq)
  left=$(( ($(field expires_ns) - $(date +%s%N)) / 1000000000 ))
  sleep 6
  seq1=$(field seq)
  is_idle && [ -n "$seq0" ] && [ "$seq1" = "$seq0" ]
}
wait_until 60 quiet || fail "the idle lease was written $((seq1 - seq0)) times in 6 s, every time"
[ "$left" -ge 40 ] || fail "idle lease expires in ${left}s, expected about 60s"
echo "$KIND idle: 0 lease writes in 6 s (6 at lease-ttl/3), expires in ${left}s"

# 2. A write wakes it: renewed at the TTL, then uploaded.
add_rows "$T/a/app.db" 5 w
wait_until 20 restore_equals "$T/a/app.db" || fail "the write after idling was not replicated"
[ "$(field seq)" -gt "$seq1" ] || fail "woke without renewing the lease"
echo "$KIND woken: renewed (seq $seq1 -> $(field seq)) and uploaded"

# 3. Idle again: a second host is refused until the idle expiry.
wait_until 20 is_idle || fail "not idle again"
cp "$T/a/app.db" "$T/b/app.db"
start b
wait_until 20 grep -q 'is leased by host' "$T/b.log" || fail "b was not refused"
until_=$(grep 'is leased by host' "$T/b.log" | grep -Eo 'until [0-9T:-]+Z' | head -1 | cut -d' ' -f2)
wait_s=$(( $(date -d "$until_" +%s) - $(date +%s) ))
[ "$wait_s" -ge 30 ] || fail "b is told the lease expires in ${wait_s}s, expected the idle TTL"
sleep 7
grep -q 'held (owner' "$T/b.log" && fail "b took an idle owner's live lease"
stop b
echo "$KIND b refused, told to wait ${wait_s}s"

# 4. A forced takeover while a is idle; a is woken by a write: fenced, and
#    nothing more of a's goes to the path.
GA=$(ls "$REP/generations")
[ "$(echo "$GA" | wc -l)" = 1 ] || fail "expected one generation, got $GA"
wait_until 20 is_idle || fail "not idle before the takeover"
"$SLUICE" restore -config "$T/a.yml" -o "$T/c/app.db" "$T/a/app.db" >/dev/null 2>&1 || fail "restore for c"
start c -force-takeover
wait_until 20 grep -q 'held (owner' "$T/c.log" || fail "c did not take the lease"
add_rows "$T/c/app.db" 3 c
wait_until 20 restore_equals "$T/c/app.db" || fail "c's rows not replicated"
before=$(find "$REP/generations/$GA" -type f | sort)
grep -q 'was taken over' "$T/a.log" && echo "(a noticed before its wake: its idle renewal came first)"
add_rows "$T/a/app.db" 7 fenced
wait_until 20 grep -q 'was taken over by host' "$T/a.log" ||
  { tail "$T/a.log"; fail "a was not told it was fenced"; }
sleep 2
after=$(find "$REP/generations/$GA" -type f | sort)
[ "$before" = "$after" ] ||
  fail "the fenced owner uploaded to the path: $(comm -13 <(echo "$before") <(echo "$after"))"
restore_equals "$T/c/app.db" || fail "the restore is not host c's"
[ "$(sqlite3 "$T/check.db" "select count(*) from t where v like 'fenced%'")" = 0 ] ||
  fail "the fenced owner's rows are in the restore"
echo "$KIND fenced: $(grep 'was taken over' "$T/a.log" | sed 's/.*msg="//' | cut -c1-110)"
stop c
stop a
T=$T0
echo "$KIND: ok"
}

run_case file
sshd_start
trap 'sshd_stop; cleanup' EXIT
run_case sftp
echo PASS
