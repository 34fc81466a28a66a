#!/usr/bin/env bash
# One lease per dir entry: every database under a `dir:` entry replicates
# under one lock.json at the entry's replica root, so idle databases cost
# no lease request of their own (lease writes per minute do not grow with
# the number of databases).  The lease guarantees hold for the entry: a
# second host with the same entry is refused with one line naming the
# owner and the expiry (not one per database) and replicates nothing
# there, takes the root over when the first host stops cleanly, and then
# every restore holds its writes.
source "$SRCDIR/tests/lib/common.sh"

N=${LEASE_DIR_DBS:-12}
TTL=3
mkdb() { # mkdb PATH ROWS
  mkdir -p "$(dirname "$1")"
  sqlite3 "$1" "PRAGMA journal_mode=WAL;
    CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT);" >/dev/null ||
    fail "cannot create $1"
  add_rows "$1" "$2" "$3"
}
add_rows() { # add_rows PATH N TAG
  sqlite3 "$1" "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s
    WHERE i < $2) INSERT INTO t(v) SELECT '$3' || i FROM s;" ||
    fail "cannot write $1"
}
host_config() { # host
  cat >"$T/$1.yml" <<YML
dbs:
  - dir: $T/$1
    pattern: "*.db"
    recursive: true
    replica:
      url: file://$T/rep
      sync-interval: 100ms
      lease-ttl: ${TTL}s
      lease-idle-ttl: 0 # renewals at the TTL: counts them per entry
YML
}
for i in $(seq "$N"); do mkdb "$T/a/t$i/app.db" 5 a; done
host_config a
host_config b

restores_equal() { # host: every database of host restores to its content
  local i out
  for i in $(seq "$N"); do
    out=$T/check-$i.db
    rm -f "$out"
    "$SLUICE" restore -config "$T/$1.yml" -o "$out" "$T/$1/t$i/app.db" \
      >"$T/restore.log" 2>&1 || return 1
    [ "$(sqlite3 "$out" 'PRAGMA integrity_check')" = ok ] || return 1
    [ "$(sqlite3 "$T/$1/t$i/app.db" 'SELECT count(*), group_concat(v) FROM t')" = \
      "$(sqlite3 "$out" 'SELECT count(*), group_concat(v) FROM t')" ] || return 1
  done
}
seq_of() { sed -n 's/.*"seq":\([0-9]*\).*/\1/p' "$T/rep/lock.json"; }
owner_of() { sed -n 's/.*"owner":"\([^"]*\)".*/\1/p' "$T/rep/lock.json"; }

"$SLUICE" replicate -config "$T/a.yml" >>"$T/a.log" 2>&1 &
PID_a=$!
PIDS+=("$PID_a")
wait_until 60 restores_equal a || fail "host a: not every database restores: $(tail -5 "$T/a.log")"
locks=$(find "$T/rep" -name lock.json | wc -l)
[ "$locks" = 1 ] && [ -f "$T/rep/lock.json" ] ||
  fail "want one lock.json at the root, found $locks: $(find "$T/rep" -name lock.json)"
owner_a=$(owner_of)

# Idle: lease writes in 3 TTLs, whatever the number of databases (one
# renewal per TTL/3: about 9, where a lease per database makes N times).
s0=$(seq_of)
sleep $((3 * TTL))
s1=$(seq_of)
writes=$((s1 - s0))
echo "idle: $writes lease writes in $((3 * TTL)) s for $N databases (ttl ${TTL}s)"
[ "$writes" -ge 3 ] && [ "$writes" -le 12 ] ||
  fail "idle lease writes: $writes in $((3 * TTL)) s (want ~9, one lease for the entry)"

# Host b: the same dir entry (its databases restored from the replica,
# then written to): refused with one line, nothing of b's in any restore.
for i in $(seq "$N"); do
  "$SLUICE" restore -config "$T/a.yml" -o "$T/b/t$i/app.db" "$T/a/t$i/app.db" \
    >/dev/null 2>&1 || fail "restore t$i for host b"
  add_rows "$T/b/t$i/app.db" 3 b
done
"$SLUICE" replicate -config "$T/b.yml" >>"$T/b.log" 2>&1 &
PID_b=$!
PIDS+=("$PID_b")
wait_until 30 grep -q "is leased by" "$T/b.log" || fail "host b was not refused: $(tail -5 "$T/b.log")"
sleep 2
refused=$(grep -c "is leased by" "$T/b.log")
[ "$refused" = 1 ] || fail "host b: $refused refusal lines (want one for the entry)"
grep "is leased by" "$T/b.log" | grep -q "$owner_a" || fail "the refusal does not name a's owner"
grep "is leased by" "$T/b.log" | grep -Eq "until [0-9]{4}-" || fail "the refusal does not say until when"
add_rows "$T/a/t1/app.db" 2 a2
wait_until 30 restores_equal a || fail "host a stopped replicating while b waits"

# a stops cleanly: the root lease is released, b takes it over, and from
# then on every restore holds b's writes.
kill -TERM "$PID_a"
wait "$PID_a" || fail "host a exited $?"
grep -q "released" "$T/a.log" || fail "host a did not release the lease"
[ "$(grep -c "released" "$T/a.log")" = 1 ] || fail "host a: more than one release line"
wait_until 30 grep -q "taking it over" "$T/b.log" || fail "b did not take the lease: $(tail -5 "$T/b.log")"
wait_until 60 restores_equal b || fail "b's writes are not in the restores"
[ "$(find "$T/rep" -name lock.json | wc -l)" = 1 ] || fail "more than one lock.json"
kill -TERM "$PID_b"
wait "$PID_b" || fail "host b exited $?"
echo PASS
