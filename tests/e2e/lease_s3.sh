#!/usr/bin/env bash
# The single-writer lease on S3 (moto: PutObject with If-None-Match: * and
# If-Match: ETag, 412 PreconditionFailed): the migration runbook run as
# written (tests/lib/lease_scenario.sh); then a raw conditional PUT shows
# that moto really refuses a stale ETag (so the test could fail).
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/lease_scenario.sh"
need_servers
MOTO=http://127.0.0.1:5000
curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/" || skip "moto not running"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export AWS_DEFAULT_REGION=us-east-1
B=sluice-lease-$$-$RANDOM
s3_mb "$MOTO" "$B" ||
  fail "create moto bucket"

shared_replica() { # name
  cat <<YML
      - name: $1
        type: s3
        bucket: $B
        path: app
        endpoint: $MOTO
        region: us-east-1
        force-path-style: true
        access-key-id: test
        secret-access-key: test
YML
}
lease_scenario s3
/usr/bin/aws --endpoint-url "$MOTO" s3api get-object --bucket "$B" --key app/lock.json \
  "$T/lock.json" >"$T/head.json" || fail "no app/lock.json in the bucket"
grep -q '"released":true' "$T/lock.json" || fail "lock.json not released: $(cat "$T/lock.json")"
# moto really refuses a stale ETag and an existing key (boto3).
python3 - "$MOTO" "$B" <<'PY' || fail "moto accepted a PutObject whose condition fails"
import sys, boto3, botocore
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
for kw in ({"IfMatch": '"0123456789abcdef0123456789abcdef"'}, {"IfNoneMatch": "*"}):
    try:
        s3.put_object(Bucket=sys.argv[2], Key="app/lock.json", Body=b"{}", **kw)
        sys.exit("accepted %r" % kw)
    except botocore.exceptions.ClientError as e:
        assert e.response["Error"]["Code"] == "PreconditionFailed", e.response
        print("moto refuses %r: HTTP %d PreconditionFailed" % (kw, e.response["ResponseMetadata"]["HTTPStatusCode"]))
PY
echo PASS
