#!/usr/bin/env bash
# snapshot-interval creates snapshots on time; retention deletes exactly
# what it should: snapshots older than the retention period and the WAL
# segments below the oldest snapshot kept, never the last snapshot, never
# what a restore still needs (the newest snapshot at or before the cutoff
# stays, for a -timestamp just inside the window; a WAL index gets one
# snapshot at most, so the writer runs through several WAL
# indexes).  On the file backend and on S3 (moto, when
# available).
source "$SRCDIR/tests/lib/common.sh"

source "$SRCDIR/tests/lib/retention_case.sh"

run_retention_case file "file://$T/file/replica"

if python3 -c 'import moto.server' 2>/dev/null; then
  need_servers
  if curl -s -o /dev/null --max-time 2 http://127.0.0.1:5000/moto-api/; then
    export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    bucket=sluice-ret-$$-$RANDOM
    curl -s -X PUT "http://127.0.0.1:5000/$bucket" >/dev/null
    run_retention_case s3 "s3://$bucket.localhost:5000/app"
  fi
else
  echo "moto not available: S3 case skipped"
fi
echo PASS
