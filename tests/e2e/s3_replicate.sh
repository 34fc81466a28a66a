#!/usr/bin/env bash
# sluice replicate to S3, end to end:
#  1. s3rver (signatures checked): a writer commits while sluice
#     replicates; the AWS CLI sees the snapshot and WAL segments; the
#     replica copied out with `aws s3 cp --recursive` restores (through the
#     file backend: s3rver's delimiter listings are broken, so sluice's own
#     S3 restore runs against moto below) to a database equal to the
#     source.  The URL form s3://BUCKET.localhost:PORT/PATH works with
#     LITESTREAM_* credentials.
#  2. moto (faithful listings), when installed: the same, restored by
#     sluice from S3; then the store goes down in the middle of a write
#     burst (a proxy drops every connection, then answers 503 SlowDown)
#     and comes back: replication keeps its place and catches up, one
#     generation, the restore equals the source.
#  3. wrong credentials (s3rver): one clear error naming the S3 code, no
#     secret in the log, and no retry storm.
. "$(dirname "$0")/../lib/common.sh"
need_servers
curl -s -o /dev/null --max-time 2 http://127.0.0.1:4568/ || skip "no S3 server"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent
AWS=/usr/bin/aws
PROXY=$SRCDIR/tests/tools/s3_fault_proxy.py
PREFIX=e2e-$$-$RANDOM
MOTO=http://127.0.0.1:5000
PROXIES=()
stop_proxies() {
  local p
  for p in "${PROXIES[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PROXIES=()
}

awscli() { # endpoint args...
  local ep=$1; shift
  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    $AWS --endpoint-url "$ep" "$@"
}

has_snapshot() { # endpoint bucket prefix (polled: not with the AWS CLI)
  s3_list --keys "$1" "$2" "$3/" 2>/dev/null | grep -q snapshot.lz4
}

start_proxy() { # args... ; sets PROXY_PORT
  python3 "$PROXY" "$@" >"$T/proxy.port" 2>"$T/proxy.err" &
  PIDS+=($!)
  PROXIES+=($!)
  wait_until 10 grep -q PORT "$T/proxy.port" || fail "proxy did not start"
  PROXY_PORT=$(awk '{print $2}' "$T/proxy.port")
}

config() { # dir endpoint bucket secret
  cat >"$1/sluice.yml" <<YML
dbs:
  - path: $1/app.db
    replicas:
      - type: s3
        bucket: $3
        path: $PREFIX/$(basename "$1")
        endpoint: $2
        force-path-style: true
        access-key-id: S3RVER
        secret-access-key: $4
        sync-interval: 100ms
YML
}

replicate_burst() { # dir endpoint bucket
  "$SQLWRITER" -db "$1/app.db" -n 1 >/dev/null
  sluice_start -config "$1/sluice.yml"
  wait_until 15 has_snapshot "$2" "$3" "$PREFIX/$(basename "$1")" ||
    fail "$(basename "$1"): no snapshot in S3"
  "$SQLWRITER" -db "$1/app.db" -duration 3 -rate 2000 -update-every 7 \
    -delete-every 11 >"$1/writer.out" || fail "writer failed"
  sluice_stop
}

restore_from_s3() { # dir
  "$SLUICE" restore -config "$1/sluice.yml" -o "$1/restored.db" "$1/app.db" \
    >"$1/restore.log" 2>&1 || { cat "$1/restore.log"; fail "restore from S3 failed"; }
  assert_same_db "$1/app.db" "$1/restored.db"
}

# --- 1. s3rver ---
D=$T/plain; mkdir -p "$D"
config "$D" http://127.0.0.1:4568 testbucket S3RVER
replicate_burst "$D" http://127.0.0.1:4568 testbucket
awscli http://127.0.0.1:4568 s3 ls --recursive "s3://testbucket/$PREFIX/plain/" >"$D/ls"
grep -Eq "$PREFIX/plain/generations/[0-9a-f]{16}/snapshots/00000000.snapshot.lz4$" "$D/ls" ||
  { cat "$D/ls"; fail "aws s3 ls lacks the snapshot"; }
grep -Eq "generations/[0-9a-f]{16}/wal/[0-9a-f]{8}_[0-9a-f]{8}.wal.lz4$" "$D/ls" ||
  fail "aws s3 ls lacks WAL segments"
awscli http://127.0.0.1:4568 s3 cp --recursive --quiet "s3://testbucket/$PREFIX/plain/" "$D/copy/" ||
  fail "aws s3 cp --recursive"
"$SLUICE" restore -o "$D/restored.db" "file://$D/copy" >"$D/restore.log" 2>&1 ||
  { cat "$D/restore.log"; fail "restore of the copied-out replica failed"; }
assert_same_db "$D/app.db" "$D/restored.db"
echo "s3rver: $(cat "$D/writer.out"), $(grep -c wal.lz4 "$D/ls") segments, restore equal"

U=$T/url; mkdir -p "$U"
"$SQLWRITER" -db "$U/app.db" -n 50 >/dev/null
LITESTREAM_ACCESS_KEY_ID=S3RVER LITESTREAM_SECRET_ACCESS_KEY=S3RVER \
  sluice_start "$U/app.db" "s3://testbucket.localhost:4568/$PREFIX/url"
wait_until 15 has_snapshot http://127.0.0.1:4568 testbucket "$PREFIX/url" ||
  fail "URL form: nothing uploaded"
sluice_stop
echo "s3rver URL form: ok"

# --- 3. wrong credentials ---
D=$T/denied; mkdir -p "$D"
: >"$T/denied-requests.log"
start_proxy --log "$T/denied-requests.log"
config "$D" "http://127.0.0.1:$PROXY_PORT" testbucket wrong-secret
"$SQLWRITER" -db "$D/app.db" -n 10 >/dev/null
: >"$T/sluice.log"
sluice_start -config "$D/sluice.yml"
sleep 3
"$SQLWRITER" -db "$D/app.db" -n 10 >/dev/null
sleep 1
sluice_stop
grep -q "SignatureDoesNotMatch" "$T/sluice.log" || { tail "$T/sluice.log"; fail "denied: no clear error"; }
grep -q "wrong-secret" "$T/sluice.log" && fail "denied: the secret appears in the log"
n=$(wc -l <"$T/denied-requests.log")
echo "denied: $n requests in 4 s; error: $(grep -m1 SignatureDoesNotMatch "$T/sluice.log" | sed 's/.*msg="//' | cut -c1-220)"
[ "$n" -le 40 ] || fail "denied: $n requests in 4 s is a retry storm"

# --- 2. moto ---
if ! curl -s -o /dev/null --max-time 1 "$MOTO/moto-api/"; then
  echo "skip moto parts (moto not running)"
  stop_proxies
  echo PASS
  exit 0
fi
B=sluice-e2e-$$-$RANDOM
s3_mb "$MOTO" "$B" || fail "create moto bucket"
D=$T/moto; mkdir -p "$D"
config "$D" "$MOTO" "$B" S3RVER
replicate_burst "$D" "$MOTO" "$B"
restore_from_s3 "$D"
"$SLUICE" generations -config "$D/sluice.yml" "$D/app.db" >"$D/gens" 2>&1 ||
  { cat "$D/gens"; fail "generations command on s3"; }
echo "moto: $(cat "$D/writer.out"), restored by sluice from S3"

D=$T/outage; mkdir -p "$D"
: >"$T/sluice.log"
start_proxy --upstream 127.0.0.1:5000 --down-file "$T/down"
config "$D" "http://127.0.0.1:$PROXY_PORT" "$B" S3RVER
"$SQLWRITER" -db "$D/app.db" -n 1 >/dev/null
sluice_start -config "$D/sluice.yml"
wait_until 15 has_snapshot "$MOTO" "$B" "$PREFIX/outage" || fail "outage: no snapshot"
"$SQLWRITER" -db "$D/app.db" -duration 8 -rate 1500 -update-every 5 >"$D/writer.out" &
W=$!
sleep 1.5
echo drop >"$T/down"   # the store is unreachable: connections dropped
sleep 2
echo 503 >"$T/down"    # then it answers 503 SlowDown
sleep 2
rm -f "$T/down"        # and it is back
wait "$W" || fail "writer failed"
sleep 2
sluice_stop
restore_from_s3 "$D"
s3_list --keys "$MOTO" "$B" "$PREFIX/outage/" >"$D/ls"
ngen=$(grep -Eo "generations/[0-9a-f]{16}/" "$D/ls" | sort -u | wc -l)
[ "$ngen" = 1 ] || { cat "$D/ls"; fail "outage: expected one generation, got $ngen"; }
nerr=$(grep -c "level=ERROR\|level=WARN" "$T/sluice.log")
[ "$nerr" -gt 0 ] || fail "outage: nothing logged while the store was down"
echo "outage: $(cat "$D/writer.out"), one generation, restore equal ($nerr warnings/errors logged)"
stop_proxies
echo PASS
