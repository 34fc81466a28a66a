#!/usr/bin/env bash
# Issue 12: restore of a ~1 GB database from S3 (moto) against the same
# objects fetched by `aws s3 cp` (Debian's awscli, its default 10
# concurrent ranged GETs) then `lz4 -d`, and against `aws s3 cp - | lz4 -d`
# (one stream, decoding while downloading), each followed by a sync, in
# alternating rounds.  Litestream is not installed here: its column is left
# out.  Every sluice restore is checked (integrity_check ran, same rows).
# Usage: bench/s3_restore.sh [MB [ROUNDS]]   (default 1000 3)
#   BASE_DB=path: a textdb.py database to grow from (saves its 90 s per
#   200 MB); MOTO=http://127.0.0.1:5000 (tests/servers/test-servers.sh).
set -u
SRCDIR=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${BUILDDIR:-$SRCDIR/build}
. "$SRCDIR/tests/lib/common.sh"
SLUICE=${SLUICE_BIN:-$SLUICE}
MB=${1:-1000}
ROUNDS=${2:-3}
MOTO=${MOTO:-http://127.0.0.1:5000}
AWS=/usr/bin/aws
[ -x "$AWS" ] || fail "needs Debian's awscli (apt-get install awscli)"
curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/" ||
  fail "moto does not answer at $MOTO (tests/servers/test-servers.sh start)"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1
ms() { echo $(( ($2 - $1) / 1000000 )); }
drop() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true; }

# The database: text rows (textdb.py), doubled by SQL up to MB.
if [ -n "${BASE_DB:-}" ]; then
  cp "$BASE_DB" "$T/app.db"
else
  python3 "$SRCDIR/bench/tools/textdb.py" "$T/app.db" "$(( MB < 200 ? MB : 200 ))"
fi
while :; do
  cur=$(stat -c %s "$T/app.db")
  [ "$cur" -lt $(( MB * 1000000 )) ] || break
  n=$(sqlite3 "$T/app.db" 'SELECT count(*) FROM t')
  add=$(( n * (MB * 1000000 - cur) / cur + 1000 ))
  sqlite3 "$T/app.db" "INSERT INTO t(name, email, payload, n)
    SELECT name, email, payload, n FROM t LIMIT $add" || fail "grow the database"
done
sqlite3 "$T/app.db" "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
size=$(stat -c %s "$T/app.db")
rows=$(sqlite3 "$T/app.db" 'SELECT count(*), sum(n) FROM t')

B=sluice-bench-$$-$RANDOM
"$AWS" --endpoint-url "$MOTO" s3api create-bucket --bucket "$B" >/dev/null ||
  fail "create bucket"
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - type: s3
        bucket: $B
        path: app
        endpoint: $MOTO
        region: us-east-1
        force-path-style: true
        access-key-id: test
        secret-access-key: test
YML
snap_key() {
  "$AWS" --endpoint-url "$MOTO" s3api list-objects-v2 --bucket "$B" \
    --prefix app/generations/ --query 'Contents[].Key' --output text 2>/dev/null |
    tr '\t' '\n' | grep 'snapshot\.lz4$' | head -1
}
have_snap() { [ -n "$(snap_key)" ]; }
sluice_start -config "$T/sluice.yml"
wait_until 600 have_snap || fail "no snapshot in s3://$B"
sluice_stop
key=$(snap_key)
gen=${key#app/generations/}; gen=${gen%%/*}
objs=$("$AWS" --endpoint-url "$MOTO" s3api list-objects-v2 --bucket "$B" \
  --prefix "app/generations/$gen/" --query 'Contents[].[Key,Size]' --output text)
nobj=$(echo "$objs" | wc -l)
bytes=$(echo "$objs" | awk '{s += $2} END {print s}')
echo "db_bytes=$size objects=$nobj object_bytes=$bytes load=$(cut -d' ' -f1-3 /proc/loadavg)"

for r in $(seq "$ROUNDS"); do
  # aws s3 cp of every object of the generation, then lz4 -d of each.
  rm -rf "$T/dl" "$T/plain.db"; drop
  t0=$(date +%s%N)
  "$AWS" --endpoint-url "$MOTO" s3 cp --recursive --quiet \
    "s3://$B/app/generations/$gen/" "$T/dl/" || fail "aws s3 cp"
  t1=$(date +%s%N)
  lz4 -d -q -f "$T/dl/snapshots/"*.snapshot.lz4 "$T/plain.db" || fail "lz4 -d"
  for w in "$T"/dl/wal/*.lz4; do [ -e "$w" ] && lz4 -d -q -c "$w" >>"$T/plain.wal"; done
  sync "$T/plain.db"
  t2=$(date +%s%N)
  rm -rf "$T/dl" "$T/plain.db" "$T/plain.wal"; drop
  # One stream: aws s3 cp - | lz4 -d (the snapshot only).
  t3=$(date +%s%N)
  "$AWS" --endpoint-url "$MOTO" s3 cp --quiet "s3://$B/$key" - |
    lz4 -d -q >"$T/plain.db" || fail "aws s3 cp - | lz4 -d"
  sync "$T/plain.db"
  t4=$(date +%s%N)
  rm -f "$T/plain.db"; drop
  t5=$(date +%s%N)
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/out.db" "$T/app.db" \
    >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore"; }
  t6=$(date +%s%N)
  grep -q 'integrity_check ok' "$T/restore.log" || fail "no integrity_check"
  [ "$(sqlite3 "$T/out.db" 'SELECT count(*), sum(n) FROM t')" = "$rows" ] ||
    fail "restored rows differ"
  check=$(grep -o 'check_elapsed=[^ ]*' "$T/restore.log" | cut -d= -f2 | tr -d '"')
  rm -f "$T/out.db"
  cp_ms=$(ms "$t0" "$t1"); cpd_ms=$(ms "$t0" "$t2"); pipe_ms=$(ms "$t3" "$t4")
  rs_ms=$(ms "$t5" "$t6")
  echo "round=$r load=$(cut -d' ' -f1 /proc/loadavg)" \
    "aws_cp_ms=$cp_ms aws_cp+lz4_d_ms=$cpd_ms aws_pipe_lz4_ms=$pipe_ms" \
    "sluice_restore_ms=$rs_ms check=$check" \
    "ratio_vs_cp+lz4=$(awk -v a="$rs_ms" -v b="$cpd_ms" 'BEGIN{printf "%.2f", a/b}')" \
    "ratio_vs_pipe=$(awk -v a="$rs_ms" -v b="$pipe_ms" 'BEGIN{printf "%.2f", a/b}')"
done
"$AWS" --endpoint-url "$MOTO" s3 rb --force "s3://$B" >/dev/null 2>&1 || true
