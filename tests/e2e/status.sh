#!/usr/bin/env bash
# `sluice status` and `sluice status -json` against a running daemon: one
# database caught up (idle), one whose file does not exist yet (waiting),
# one whose replica cannot write (error, with the error); and the aggregate
# metrics (databases by state, largest lag, lag histogram, errors), with the
# per-database series off above metrics-per-database-max.
source "$SRCDIR/tests/lib/common.sh"
command -v python3 >/dev/null || skip "python3 not installed"
command -v curl >/dev/null || skip "curl not installed"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The bad replica takes its lease (lock.json at its root) but cannot
# upload: a file stands where it wants generations/.
mkdir -p "$T/replica-bad"
: >"$T/replica-bad/generations"
cat >"$T/sluice.yml" <<YML
addr: 127.0.0.1:$PORT
metrics-per-database-max: 2
dbs:
  - path: $T/good.db
    replicas:
      - name: ok
        url: file://$T/replica-good
        sync-interval: 100ms
  - path: $T/later.db
    replicas:
      - name: ok
        url: file://$T/replica-later
  - path: $T/bad.db
    replicas:
      - name: broken
        url: file://$T/replica-bad
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/good.db" -n 50 >/dev/null
"$SQLWRITER" -db "$T/bad.db" -n 50 >/dev/null

# No daemon yet: a clear error, exit 1.
if "$SLUICE" status -config "$T/sluice.yml" >"$T/out" 2>"$T/err"; then
  fail "status succeeded with no daemon running"
fi
grep -q "cannot reach the daemon's metrics server at 127.0.0.1:$PORT" "$T/err" ||
  fail "no clear error without a daemon: $(cat "$T/err")"

sluice_start -config "$T/sluice.yml"
st() { "$SLUICE" status -config "$T/sluice.yml"; }
# state DB: the state column of DB's line in `sluice status`.
state() { st | awk -v d="$1" '$1 == d { print $2 }'; }
settled() {
  [ "$(state "$T/good.db")" = idle ] && [ "$(state "$T/later.db")" = waiting ] &&
    [ "$(state "$T/bad.db")" = error ]
}
wait_until 30 settled || fail "states not reached: $(st 2>&1)"
st >"$T/status.txt"
cat "$T/status.txt"
head -1 "$T/status.txt" | grep -Eq '^database +state +sleep +replica +lag +error$' ||
  fail "no header line"
[ "$(wc -l <"$T/status.txt")" -eq 4 ] || fail "want a header and 3 lines"
grep -E "^$T/good.db +idle +(-|light|deep) +ok +0s +-$" "$T/status.txt" >/dev/null ||
  fail "good.db line"
grep -E "^$T/bad.db +error +[-a-z]+ +broken +[1-9][0-9]*s +.*replica-bad/generations" "$T/status.txt" >/dev/null ||
  fail "bad.db line does not name the failing path"

"$SLUICE" status -json -config "$T/sluice.yml" >"$T/status.json" ||
  fail "status -json failed"
python3 - "$T" <<'PY' || fail "status -json"
import json, sys
t = sys.argv[1]
doc = json.load(open(t + "/status.json"))
dbs = {d["database"]: d for d in doc["databases"]}
assert set(dbs) == {t + "/good.db", t + "/later.db", t + "/bad.db"}, dbs
g, l, b = dbs[t + "/good.db"], dbs[t + "/later.db"], dbs[t + "/bad.db"]
assert g["state"] == "idle" and len(g["generation"]) == 16, g
assert g["replicas"] == [{"name": "ok", "state": "idle", "lease": "held",
                          "lag_seconds": 0, "error": "",
                          "budget_wait": False}], g
assert doc["budget"]["requests_per_second"] == 0, doc["budget"]
assert doc["budget"]["uploads_in_flight_max"] == 64, doc["budget"]
assert l["state"] == "waiting" and l["generation"] == "", l
assert b["state"] == "error", b
r = b["replicas"][0]
assert r["name"] == "broken" and r["state"] == "backoff", r
assert r["lag_seconds"] > 0 and "replica-bad/generations" in r["error"], r
print("status -json ok")
PY

# Aggregates are there; the per-database series are not (3 > 2).
curl -sf "http://127.0.0.1:$PORT/metrics" >"$T/metrics.txt" || fail "no /metrics"
python3 - "$T/metrics.txt" <<'PY' || fail "aggregate metrics"
import re, sys
v = {}
for line in open(sys.argv[1]):
    if line.startswith("#"):
        continue
    k, val = line.rsplit(" ", 1)
    v[k] = float(val)
assert not any(k.startswith(("litestream_db_size", "sluice_replica_lag_seconds{"))
               for k in v), "per-database series above the limit"
assert v['sluice_databases{state="ready"}'] == 2, v
assert v['sluice_databases{state="waiting"}'] == 1, v
assert v["sluice_replicas_failing"] == 1, v
assert v["sluice_replica_lag_max_seconds"] > 0, v
assert v['sluice_replica_lag_distribution_seconds_bucket{le="0"}'] == 2, v
assert v['sluice_replica_lag_distribution_seconds_bucket{le="+Inf"}'] == 3, v
assert v["sluice_replica_lag_distribution_seconds_count"] == 3, v
assert v['sluice_errors_total{kind="upload"}'] >= 1, v
print("aggregates ok")
PY
sluice_stop
echo "PASS"
