#!/usr/bin/env bash
# Point-in-time restores stay consistent while snapshots are taken often.
#
# A snapshot of WAL index N is the database at a shadow position N:S, and
# a restore replays index N from offset 0 over it.  If the snapshot object
# were uploaded before the segments of N up to S, a -timestamp restore to
# a time in between would replay only part of [0, S) over an image that
# already holds all of it: old page versions over new ones.
#
# A writer commits continuously (each commit numbered, its content digest
# recorded) while sluice replicates to a file replica and to S3 (moto),
# both snapshotting every 700 ms and by size.  (S3 times are whole
# seconds: there segments go once a second, so that a segment following a
# snapshot is often in the next second.)  After the stop, a restore
# at the creation time of every object of each replica (every state a
# -timestamp restore can see is one of these) must be a commit of the
# source: integrity_check ok, content equal to the source at that commit,
# and commits never going back as the time goes forward.  So must every
# latest-state restore made while the writer ran.
source "$SRCDIR/tests/lib/common.sh"
DURATION=${PITR_DURATION:-12}
MOTO=http://127.0.0.1:5000
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x
export AWS_DEFAULT_REGION=us-east-1
S3=0
if [ -z "${PITR_NO_S3:-}" ]; then
  need_servers
  if curl -s -o /dev/null --max-time 1 "$MOTO/moto-api/"; then S3=1; fi
fi
B=sluice-pitr-$$-$RANDOM
if [ "$S3" = 1 ]; then
  s3_mb "$MOTO" "$B" ||
    fail "create moto bucket"
fi

{
  cat <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: file
        url: file://$T/replica
        sync-interval: 100ms
        snapshot-interval: 700ms
        snapshot-wal-factor: 1
YML
  [ "$S3" = 1 ] && cat <<YML
      - name: s3
        type: s3
        bucket: $B
        path: pitr
        endpoint: $MOTO
        force-path-style: true
        access-key-id: x
        secret-access-key: x
        sync-interval: 1s
        snapshot-interval: 700ms
        snapshot-wal-factor: 1
YML
} >"$T/sluice.yml"

python3 "$SRCDIR/tests/tools/pitr_writer.py" "$T/app.db" create ||
  fail "create the database"
sluice_start -config "$T/sluice.yml"
wait_until 20 sh -c "ls $T/replica/generations/*/snapshots/*.lz4" ||
  fail "no snapshot uploaded"
s3_snapshot() {
  s3_list --keys "$MOTO" "$B" pitr/ | grep -q snapshot.lz4
}
if [ "$S3" = 1 ]; then
  wait_until 20 s3_snapshot || fail "no snapshot uploaded to S3"
fi

# Latest-state restores while the writer runs, alternating between the
# replicas (checked after: each must be a commit of the source).
mkdir -p "$T/live"
(
  i=0
  while [ ! -f "$T/writer.done" ]; do
    i=$((i + 1))
    name="file"
    [ "$S3" = 1 ] && [ $((i % 2)) = 0 ] && name=s3
    "$SLUICE" restore -config "$T/sluice.yml" -replica "$name" \
      -o "$T/live/$i.db" "$T/app.db" >"$T/live.log" 2>&1 </dev/null ||
      { echo "live restore $i ($name):"; tail -3 "$T/live.log"; } >>"$T/live.err"
    sleep 0.1
  done
) &
LIVE=$!
PIDS+=("$LIVE")

# Commits numbered k = 1, 2, ...; after each, "k digest" (the writer is the
# only one: the content after its commit is the content at commit k).
python3 "$SRCDIR/tests/tools/pitr_writer.py" "$T/app.db" "$DURATION" \
  >"$T/commits" || fail "writer"
touch "$T/writer.done"
wait "$LIVE"
sluice_stop
grep -c "snapshot written" "$T/sluice.log" >"$T/nsnaps" || true

# Object creation times, as the restore sees them: file mtimes, S3
# LastModified.  One line per object: "ns key".
find "$T/replica" -path "*/generations/*" -name '*.lz4' -printf '%T@ %P\n' |
  awk '{split($1, a, "."); printf "%s%s %s\n", a[1], substr(a[2] "000000000", 1, 9), $2}' \
    >"$T/times.file"
if [ "$S3" = 1 ]; then
  s3_list "$MOTO" "$B" pitr/ >"$T/list.json" || fail "list the S3 replica"
  python3 - "$T/list.json" >"$T/times.s3" <<'PY' || fail "parse the S3 listing"
import datetime, json, sys
for o in json.load(open(sys.argv[1])).get("Contents", []):
    if not o["Key"].endswith(".lz4"):
        continue
    t = datetime.datetime.fromisoformat(o["LastModified"].replace("Z", "+00:00"))
    ns = int(t.timestamp()) * 10**9 + t.microsecond * 1000
    print(ns, o["Key"])
PY
fi

# Restores at every object time of each replica (sampled to at most
# PITR_MAX per replica, snapshots always included), checked against the
# commits.
PITR_MAX=${PITR_MAX:-400}
replicas="file"
[ "$S3" = 1 ] && replicas="file s3"
python3 "$SRCDIR/tests/tools/pitr_check.py" "$SLUICE" "$T" "$PITR_MAX" $replicas ||
  fail "restores"
echo "PASS: $(cat "$T/nsnaps") snapshots written"
