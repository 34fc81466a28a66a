#!/usr/bin/env bash
# A crash between a snapshot and the segments it needs leaves a replica
# that restores consistently.
#
# S3 (moto) behind a proxy that, while $T/down exists, answers 503 to the
# WAL segment uploads only: snapshots still go through.  A writer commits
# continuously; once the replica holds segments of a WAL index after the
# first, and of the current index past its start (the writer slowed
# down), the segments stop going through, a snapshot may be taken (every
# 1 s, one per index) and sluice is killed (-9) a moment later.  A snapshot uploaded before
# the segments up to its position would now stay without them for good:
# the latest restore would lay part of its WAL index over an image that
# holds all of it.  Every object time, and the latest state, must restore
# to a commit of the source (tests/tools/pitr_check.py).
source "$SRCDIR/tests/lib/common.sh"
MOTO=http://127.0.0.1:5000
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x
export AWS_DEFAULT_REGION=us-east-1
need_servers
curl -s -o /dev/null --max-time 1 "$MOTO/moto-api/" || skip "moto not running"
B=sluice-crash-$$-$RANDOM
s3_mb "$MOTO" "$B" ||
  fail "create moto bucket"
python3 "$SRCDIR/tests/tools/s3_fault_proxy.py" --upstream 127.0.0.1:5000 \
  --down-file "$T/down" --down-match /wal/ --down-mode 503 >"$T/proxy.port" \
  2>"$T/proxy.err" &
PIDS+=($!)
wait_until 10 grep -q PORT "$T/proxy.port" || fail "proxy did not start"
PORT=$(awk '{print $2}' "$T/proxy.port")

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: s3
        type: s3
        bucket: $B
        path: crash
        endpoint: http://127.0.0.1:$PORT
        force-path-style: true
        access-key-id: x
        secret-access-key: x
        sync-interval: 100ms
        snapshot-interval: 1s
        snapshot-wal-factor: 0
YML
python3 "$SRCDIR/tests/tools/pitr_writer.py" "$T/app.db" create ||
  fail "create the database"
sluice_start -config "$T/sluice.yml"
python3 "$SRCDIR/tests/tools/pitr_writer.py" "$T/app.db" 60 "$T/stop" \
  >"$T/commits" 2>"$T/writer.err" &
WRITER=$!
PIDS+=("$WRITER")

# Segments of a later WAL index than the first snapshot's in the store;
# then a slow writer (the index stays), and segments of the current index
# (past its offset 0) before the segments stop going through.
listing() {
  s3_list --keys "$MOTO" "$B" crash/ |
    grep -oE '/wal/[0-9a-f]{8}_[0-9a-f]{8}' | sed 's|/wal/||' | sort >"$T/ls"
}
later_index() {
  listing && grep -v '^00000000_' "$T/ls" | grep -qv '_00000000$'
}
wait_until 40 later_index || fail "no segments of a second WAL index"
touch "$T/app.db.slow"
sleep 1
listing
last=$(tail -1 "$T/ls")
mid_index() {
  listing && grep "^${last%_*}_" "$T/ls" | grep -qv "_00000000$" &&
    [ "$(tail -1 "$T/ls")" != "$last" ]
}
wait_until 20 mid_index || fail "no new segment in WAL index ${last%_*}"
touch "$T/down"
# A snapshot of the current index while the segments fail (sluice takes
# none if the index has one already: up to 5 s for one), then the crash.
n0=$(grep -c "snapshot taken" "$T/sluice.log")
taken=no
if wait_until 5 sh -c "[ \$(grep -c 'snapshot taken' '$T/sluice.log') -gt $n0 ]"; then
  taken=yes
  sleep 1 # (its upload, where it goes first)
fi
sluice_stop KILL
touch "$T/stop"
wait "$WRITER" || { cat "$T/writer.err"; fail "writer failed"; }
rm -f "$T/down"

s3_list "$MOTO" "$B" crash/ >"$T/list.json" || fail "list the S3 replica"
python3 - "$T/list.json" >"$T/times.s3" <<'PY' || fail "parse the S3 listing"
import datetime, json, sys
for o in json.load(open(sys.argv[1])).get("Contents", []):
    if not o["Key"].endswith(".lz4"):
        continue
    t = datetime.datetime.fromisoformat(o["LastModified"].replace("Z", "+00:00"))
    print(int(t.timestamp()) * 10**9 + t.microsecond * 1000, o["Key"])
PY
# The source's last commits never reached the store: the latest state is
# some commit, not the last one.
PITR_LATEST_ANY=1 python3 "$SRCDIR/tests/tools/pitr_check.py" "$SLUICE" "$T" 40 s3 ||
  fail "restores"
echo "PASS: $(grep -c 'snapshot written' "$T/sluice.log") snapshots written," \
  "$(grep -c /snapshots/ "$T/times.s3") in the store; one taken in the outage: $taken"
