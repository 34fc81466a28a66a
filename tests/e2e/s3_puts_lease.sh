#!/usr/bin/env bash
# A busy database's PUTs to an object store stay at one per sync-interval
# on average with its lease renewals counted in (issue 12's S3 row: the
# renewals are paid from the uploads' token bucket, replica.c on_lease).
# moto behind a proxy that logs every request; sync-interval 200ms and a
# lease-ttl of 1.5 s (a renewal every 0.5 s, 40 % more PUTs if they were
# not counted); a writer at 50 commits/s for 8 s.  The PUTs the store sees
# meanwhile stay within 8 s / 200ms + the bucket's burst, the renewals did
# happen, the uploads were not starved, and the restore equals the source.
source "$SRCDIR/tests/lib/common.sh"
need_servers
MOTO=http://127.0.0.1:5000
curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/" || skip "moto not running"
B=sluice-puts-$$-$RANDOM
s3_mb "$MOTO" "$B" || fail "create moto bucket"
python3 "$SRCDIR/tests/tools/s3_fault_proxy.py" --upstream 127.0.0.1:5000 \
  --log "$T/requests.log" >"$T/proxy.port" 2>"$T/proxy.err" &
PIDS+=($!)
wait_until 10 grep -q PORT "$T/proxy.port" || fail "proxy did not start"
PROXY=http://127.0.0.1:$(awk '{print $2}' "$T/proxy.port")
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - type: s3
        bucket: $B
        path: app
        endpoint: $PROXY
        region: us-east-1
        force-path-style: true
        access-key-id: test
        secret-access-key: test
        sync-interval: 200ms
        lease-ttl: 1500ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 20 grep -q 'snapshots/00000000.snapshot.lz4' "$T/requests.log" || fail "no snapshot"
sleep 1
t0=$(date +%s.%N)
"$SQLWRITER" -db "$T/app.db" -duration 8 -rate 50 >"$T/w.out" || fail "writer"
t1=$(date +%s.%N)
read -r wal lease secs < <(python3 - "$T/requests.log" "$t0" "$t1" <<'PY'
import json, sys
t0, t1 = float(sys.argv[2]), float(sys.argv[3])
rs = [json.loads(l) for l in open(sys.argv[1])]
rs = [r for r in rs if t0 <= r["t"] <= t1 and r["method"] == "PUT"]
wal = sum(1 for r in rs if "/wal/" in r["path"])
lease = sum(1 for r in rs if r["path"].endswith("/lock.json"))
print(wal, lease, "%.2f" % (t1 - t0))
PY
)
echo "in $secs s: $wal WAL segment PUTs + $lease lease PUTs"
[ "$lease" -ge 8 ] || fail "only $lease lease renewals in $secs s (lease-ttl 1.5 s)"
[ "$wal" -ge 10 ] || fail "only $wal WAL uploads in $secs s: starved"
# One token per 200 ms, a burst of 1.5, and one PUT in flight at each end.
python3 -c "import sys; n,s=int(sys.argv[1]),float(sys.argv[2]); sys.exit(0 if n <= s / 0.2 + 1.5 + 2 else 1)" \
  "$((wal + lease))" "$secs" ||
  fail "$((wal + lease)) PUTs in $secs s at sync-interval 200ms: the renewals came on top"
sluice_stop
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "$(rows "$T/restored.db") rows restored"
echo PASS
