#!/usr/bin/env bash
# Cross-check the S3 backend with a real S3 client: objects sluice's
# backend writes (LZ4-framed as snapshots are) are listed by
# `aws s3 ls --recursive` under the expected names and decompress with
# `lz4 -d`; objects the AWS CLI writes are listed and read back by ours.
# Against s3rver (signature-checking) and, when present, moto (where
# head-object also shows the SSE and storage class we asked for).
. "$(dirname "$0")/../lib/common.sh"

TOOL=$BUILDDIR/core_s3obj
AWS=/usr/bin/aws
[ -x "$TOOL" ] || fail "missing $TOOL (build first)"
[ -x "$AWS" ] || skip "no $AWS"
command -v lz4 >/dev/null || skip "no lz4 CLI"
need_servers
curl -s -o /dev/null --max-time 2 http://127.0.0.1:4568/ || skip "no S3 server"

export AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER
export AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_SHARED_CREDENTIALS_FILE=/nonexistent AWS_CONFIG_FILE=/nonexistent
PREFIX=cli-$$-$RANDOM
GEN=0123456789abcdef

# A real SQLite database as the snapshot's content.
sqlite3 "$T/db" "CREATE TABLE t(x); WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i<5000) INSERT INTO t SELECT randomblob(100) FROM c;"
head -c 300000 /dev/urandom >"$T/wal"

crosscheck() { # endpoint bucket [extra tool options...]
  local ep=$1 bucket=$2; shift 2
  local tool=("$TOOL" --endpoint "$ep" --bucket "$bucket" --path "$PREFIX" --path-style 1 "$@")
  local snap=generations/$GEN/snapshots/00000000.snapshot.lz4
  local wal=generations/$GEN/wal/00000000_00000000.wal.lz4
  "${tool[@]}" put-lz4 "$snap" "$T/db" || fail "put snapshot to $ep"
  "${tool[@]}" put-lz4 "$wal" "$T/wal" || fail "put wal to $ep"

  $AWS --endpoint-url "$ep" s3 ls --recursive "s3://$bucket/$PREFIX/" >"$T/ls" ||
    fail "aws s3 ls against $ep"
  grep -q " $PREFIX/$snap\$" "$T/ls" || { cat "$T/ls"; fail "aws s3 ls lacks $snap"; }
  grep -q " $PREFIX/$wal\$" "$T/ls" || { cat "$T/ls"; fail "aws s3 ls lacks $wal"; }

  rm -f "$T/dl.lz4" "$T/dl"
  $AWS --endpoint-url "$ep" s3 cp "s3://$bucket/$PREFIX/$snap" "$T/dl.lz4" >/dev/null ||
    fail "aws s3 cp download from $ep"
  lz4 -d -q "$T/dl.lz4" "$T/dl" || fail "lz4 -d rejects the snapshot object"
  cmp -s "$T/db" "$T/dl" || fail "snapshot content differs after lz4 -d"
  [ "$(sqlite3 "$T/dl" 'SELECT count(*) FROM t')" = 5000 ] || fail "restored db rows"

  # The other way round: the AWS CLI writes, we list and read.
  lz4 -q -f "$T/wal" "$T/cli.lz4"
  $AWS --endpoint-url "$ep" s3 cp "$T/cli.lz4" "s3://$bucket/$PREFIX/generations/$GEN/wal/00000001_00000000.wal.lz4" >/dev/null ||
    fail "aws s3 cp upload to $ep"
  "${tool[@]}" list "generations/$GEN/wal/" >"$T/ours" || fail "list on $ep"
  [ "$(wc -l <"$T/ours")" = 2 ] || { cat "$T/ours"; fail "our listing: expected 2 WAL objects"; }
  "${tool[@]}" get "generations/$GEN/wal/00000001_00000000.wal.lz4" "$T/got.lz4" || fail "get on $ep"
  cmp -s "$T/cli.lz4" "$T/got.lz4" || fail "object written by aws differs when read by us"
  "${tool[@]}" get "generations/$GEN/wal/00000001_00000000.wal.lz4" "$T/part" 4 10 || fail "ranged get on $ep"
  cmp -s <(tail -c +5 "$T/cli.lz4" | head -c 10) "$T/part" || fail "ranged get content"

  "${tool[@]}" del "$snap" "$wal" "generations/$GEN/wal/00000001_00000000.wal.lz4" || fail "del on $ep"
  $AWS --endpoint-url "$ep" s3 ls --recursive "s3://$bucket/$PREFIX/" >"$T/ls2"
  [ ! -s "$T/ls2" ] || { cat "$T/ls2"; fail "objects left after del on $ep"; }
  echo "ok   $ep"
}

crosscheck http://127.0.0.1:4568 testbucket

if curl -s -o /dev/null --max-time 1 http://127.0.0.1:5000/moto-api/; then
  B=sluice-cli-$$-$RANDOM
  $AWS --endpoint-url http://127.0.0.1:5000 s3api create-bucket --bucket "$B" >/dev/null ||
    fail "create moto bucket"
  crosscheck http://127.0.0.1:5000 "$B"
  # SSE and storage class, one config line each, seen by a real client.
  "$TOOL" --endpoint http://127.0.0.1:5000 --bucket "$B" --path "$PREFIX" \
    --sse AES256 --storage-class STANDARD_IA put sse.bin "$T/wal" || fail "put with SSE"
  $AWS --endpoint-url http://127.0.0.1:5000 s3api head-object --bucket "$B" \
    --key "$PREFIX/sse.bin" >"$T/head" || fail "head-object"
  grep -q '"ServerSideEncryption": "AES256"' "$T/head" || { cat "$T/head"; fail "no SSE on object"; }
  grep -q '"StorageClass": "STANDARD_IA"' "$T/head" || { cat "$T/head"; fail "no storage class on object"; }
  echo "ok   moto SSE + storage class"
else
  echo "skip moto (not running)"
fi
echo PASS
