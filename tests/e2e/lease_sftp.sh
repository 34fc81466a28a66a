#!/usr/bin/env bash
# The single-writer lease on SFTP (a real OpenSSH server on 127.0.0.1):
# lock.json.d/ holds immutable versions, each created by a RENAME that
# OpenSSH refuses when the name exists (link(2)), so of two writers of
# one version exactly one succeeds.  The migration runbook run as written
# (tests/lib/lease_scenario.sh: refusal naming the owner, takeover after
# the release and after the lapse, -force-takeover fencing the old owner,
# kill -9 and restart resuming); then rounds of three sluice processes
# started in the same moment on a fresh path: exactly one takes it, the
# others are refused with one line naming the winner; then a raw sftp
# rename onto an existing name, which the server must refuse (so the test
# could fail).
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/sshd.sh"
source "$SRCDIR/tests/lib/lease_scenario.sh"
sshd_start
trap 'sshd_stop; cleanup' EXIT
H=127.0.0.1:$SSHD_PORT
REMOTE=$T/remote
mkdir -p "$REMOTE"

sftp_replica() { # name path
  cat <<YML
      - name: $1
        url: sftp://root@$H$2
        key-path: $SSHD_KEY
        host-key-path: $SSHD_KNOWN_HOSTS
YML
}
shared_replica() { sftp_replica "$1" "$REMOTE/app"; }

lease_scenario sftp
grep -h 'best effort' "$T"/sftp/*.log && fail "the sftp lease is still best effort"
# Litestream 0.3's layout: generations/ and the lease's versions, no
# temporary file left, at most two versions kept, the last one released.
[ "$(cd "$REMOTE/app" && ls -A | sort | tr '\n' ' ')" = "generations lock.json.d " ] ||
  fail "unexpected files at the replica root: $(ls -A "$REMOTE/app")"
vers=$(ls -A "$REMOTE/app/lock.json.d")
echo "lock.json.d: $(echo $vers)"
echo "$vers" | grep -qv '^[0-9]\{20\}$' && fail "a leftover in lock.json.d: $vers"
[ "$(echo "$vers" | wc -l)" -le 2 ] || fail "old lease versions not removed: $vers"
grep -q '"released":true' "$REMOTE/app/lock.json.d/$(echo "$vers" | tail -1)" ||
  fail "the last lease version is not released"

# Races: three hosts start at once on a fresh path, five times.
race_config() { # dir round host
  mkdir -p "$1/$3"
  "$SQLWRITER" -db "$1/$3/app.db" -n 3 >/dev/null
  {
    printf 'dbs:\n  - path: %s\n    replicas:\n' "$1/$3/app.db"
    sftp_replica race "$REMOTE/race$2"
    echo "        sync-interval: 100ms"
    echo "        lease-ttl: 20s"
  } >"$1/$3.yml"
}
decided() { # dir: every host took the lease or was refused
  local h
  for h in x y z; do
    grep -q -e 'held (owner' -e 'is leased by host' "$1/$h.log" || return 1
  done
}
for round in 1 2 3 4 5; do
  R=$T/race$round
  mkdir -p "$R"
  for h in x y z; do race_config "$R" "$round" $h; done
  pids=()
  for h in x y z; do
    "$SLUICE" replicate -config "$R/$h.yml" >"$R/$h.log" 2>&1 &
    pids+=($!)
    PIDS+=($!)
  done
  wait_until 30 decided "$R" || { tail "$R"/*.log; fail "round $round: not every host decided"; }
  winners=$(grep -l 'held (owner' "$R"/*.log | wc -l)
  refused=$(grep -l 'is leased by host' "$R"/*.log | wc -l)
  [ "$winners" = 1 ] && [ "$refused" = 2 ] ||
    { grep -h 'lease' "$R"/*.log; fail "round $round: $winners hosts took the lease, $refused were refused"; }
  w=$(basename "$(grep -l 'held (owner' "$R"/*.log)" .log)
  wpid=${pids[$(( $(printf 'x\ny\nz\n' | grep -n "^$w$" | cut -d: -f1) - 1 ))]}
  for h in x y z; do
    [ $h = "$w" ] && continue
    [ "$(grep -c 'is leased by host' "$R/$h.log")" = 1 ] || fail "round $round: $h's refusal not one line"
    grep 'is leased by host' "$R/$h.log" | grep -q "pid $wpid" ||
      fail "round $round: $h's refusal does not name the winner's pid $wpid"
  done
  # A race that both readers saw empty was decided by the rename: the
  # losers' logs say they read again (no warning, no error but the refusal).
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for p in "${pids[@]}"; do wait "$p" || fail "round $round: a host exited $?"; done
  echo "round $round: $w won ($(grep -h 'is leased by host' "$R"/*.log | wc -l) refusals)"
done

# The server really refuses a rename onto an existing version: a version
# planted where the owner's next renewal goes must fence it (a rename that
# replaced files would let the renewal win).
P=$T/plant
race_config "$P" plant x
"$SLUICE" replicate -config "$P/x.yml" >"$P/x.log" 2>&1 &
PIDS+=($!)
ppid=$!
wait_until 20 grep -q 'held (owner' "$P/x.log" || fail "plant: no lease"
LD=$REMOTE/raceplant/lock.json.d
cur=$(ls "$LD" | grep -E '^[0-9]{20}$' | sort | tail -1)
next=$(printf '%020d' $((10#$cur + 1)))
exp=$(( ($(date +%s) + 3600) * 1000000000 ))
printf '{"version":1,"owner":"intruder:1:1.0","host":"intruder","pid":1,"expires_ns":%s,"released":false}\n' "$exp" >"$LD/.plant"
mv "$LD/.plant" "$LD/$next"
wait_until 30 grep -q 'was taken over by host intruder' "$P/x.log" ||
  { tail "$P/x.log"; fail "the renewal replaced a version that exists"; }
grep -q '"owner":"intruder' "$LD/$next" || fail "the planted version was overwritten"
echo "planted version $next fenced the owner: $(grep 'was taken over' "$P/x.log" | sed 's/.*msg="//' | cut -c1-120)"
kill -TERM "$ppid"; wait "$ppid"
echo PASS
