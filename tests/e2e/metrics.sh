#!/usr/bin/env bash
# The metrics port: /metrics passes promtool (except the legacy Litestream
# counter names, kept for existing dashboards) and carries every metric of
# spec 7 with its labels plus sluice's own; /healthz is 200 while replicas
# keep up and 503 once one lags more than health-max-sync-age; everything
# else (e.g. /debug/pprof/) is 404.
source "$SRCDIR/tests/lib/common.sh"
command -v curl >/dev/null || skip "curl not installed"
command -v python3 >/dev/null || skip "python3 not installed"
PROMTOOL=$(command -v promtool) || skip "promtool not installed (Debian package prometheus)"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT
DB=$T/app.db
# Replica a's path is a symlink, switched atomically (rename) between its
# directory and a plain file: while it points at the file every request
# fails (ENOTDIR), and sluice cannot recreate the directory in between (as
# it could between a mv and a write, or an rm and a mv back).
mkdir -p "$T/store-a" && echo "not a directory" >"$T/nodir"
point_a() { ln -sfn "$1" "$T/replica-a.new" && mv -T "$T/replica-a.new" "$T/replica-a"; }
point_a "$T/store-a"
cat >"$T/sluice.yml" <<YML
addr: 127.0.0.1:$PORT
health-max-sync-age: 1s
dbs:
  - path: $DB
    replicas:
      - name: a
        url: file://$T/replica-a
        sync-interval: 100ms
      - name: b
        url: file://$T/replica-b
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$DB" -n 100 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 curl -sf "$URL/metrics" -o /dev/null || fail "no /metrics on $URL"

status() { curl -s -o "$T/body" -w '%{http_code}' "$URL$1"; }
# lag NAME: sluice_replica_lag_seconds of replica NAME.
lag() {
  curl -s "$URL/metrics" |
    awk -v n="name=\"$1\"" '/^sluice_replica_lag_seconds\{/ && index($0, n) { print $2 }'
}
caught_up() { [ "$(lag a)" = 0 ] && [ "$(lag b)" = 0 ]; }

"$SQLWRITER" -db "$DB" -n 200 >/dev/null
wait_until 20 caught_up || fail "replicas not caught up: a=$(lag a) b=$(lag b)"
curl -s "$URL/metrics" >"$T/metrics.txt"

# promtool: only the legacy names may be flagged, and only for their
# suffixes.
LEGACY="litestream_total_wal_bytes litestream_sync_count
litestream_sync_error_count litestream_sync_seconds litestream_checkpoint_count
litestream_checkpoint_error_count litestream_checkpoint_seconds
litestream_replica_wal_bytes litestream_replica_operation_bytes"
rc=0
"$PROMTOOL" check metrics <"$T/metrics.txt" >"$T/promtool.out" 2>&1 || rc=$?
cp "$T/promtool.out" "$T/unexpected"
for m in $LEGACY; do
  grep -v -x -e "$m counter metrics should have \"_total\" suffix" \
    -e "$m non-histogram and non-summary metrics should not have \"_count\" suffix" \
    "$T/unexpected" >"$T/tmp" || true
  mv "$T/tmp" "$T/unexpected"
done
if [ -s "$T/unexpected" ]; then
  cat "$T/unexpected" >&2
  fail "promtool check metrics complains (exit $rc) beyond the legacy names"
fi
echo "promtool: $(wc -l <"$T/promtool.out") complaints, all about legacy names"

# Every metric of spec 7 with its type and label names, and sluice's own.
python3 - "$T/metrics.txt" <<'PY' || fail "metric names, types or labels"
import re, sys
want = {
    "litestream_db_size": ("gauge", {"db"}),
    "litestream_wal_size": ("gauge", {"db"}),
    "litestream_total_wal_bytes": ("counter", {"db"}),
    "litestream_shadow_wal_index": ("gauge", {"db"}),
    "litestream_shadow_wal_size": ("gauge", {"db"}),
    "litestream_sync_count": ("counter", {"db"}),
    "litestream_sync_error_count": ("counter", {"db"}),
    "litestream_sync_seconds": ("counter", {"db"}),
    "litestream_checkpoint_count": ("counter", {"db", "mode"}),
    "litestream_checkpoint_error_count": ("counter", {"db", "mode"}),
    "litestream_checkpoint_seconds": ("counter", {"db", "mode"}),
    "litestream_replica_wal_bytes": ("counter", {"db", "name"}),
    "litestream_replica_wal_index": ("gauge", {"db", "name"}),
    "litestream_replica_wal_offset": ("gauge", {"db", "name"}),
    "litestream_replica_validation_total": ("counter", {"db", "name", "status"}),
    "litestream_replica_operation_total": ("counter", {"replica_type", "operation"}),
    "litestream_replica_operation_bytes": ("counter", {"replica_type", "operation"}),
    "sluice_replica_lag_seconds": ("gauge", {"db", "name"}),
    "sluice_replica_last_sync_timestamp_seconds": ("gauge", {"db", "name"}),
    "sluice_replica_upload_errors_total": ("counter", {"db", "name"}),
    "sluice_replica_requests_total": ("counter", {"db", "name", "operation"}),
    "sluice_replica_bytes_total": ("counter", {"db", "name", "operation"}),
    "sluice_resyncs_total": ("counter", {"db"}),
    "sluice_resync_bytes_total": ("counter", {"db"}),
    # Aggregates, there at any number of databases.
    "sluice_databases": ("gauge", {"state"}),
    "sluice_replicas_failing": ("gauge", set()),
    "sluice_replica_lag_max_seconds": ("gauge", set()),
    "sluice_errors_total": ("counter", {"kind"}),
}
types, labels, values = {}, {}, {}
for line in open(sys.argv[1]):
    m = re.match(r"# TYPE (\S+) (\S+)", line)
    if m:
        types[m[1]] = m[2]
        continue
    if line.startswith("#") or not line.strip():
        continue
    m = re.match(r"([a-z_]+)(?:\{(.*)\})? (\S+)$", line.strip())
    if not m:
        sys.exit("unparsable sample: " + line)
    lab = m[2] or ""
    names = set(re.findall(r'([a-z_]+)="', lab))
    labels.setdefault(m[1], set()).add(frozenset(names))
    values.setdefault(m[1], []).append((dict(re.findall(r'([a-z_]+)="([^"]*)"', lab)), float(m[3])))
bad = []
for name, (typ, lab) in want.items():
    if types.get(name) != typ:
        bad.append("%s: type %s, want %s" % (name, types.get(name), typ))
    if labels.get(name) != {frozenset(lab)}:
        bad.append("%s: labels %s, want %s" % (name, labels.get(name), sorted(lab)))
for name in types:
    if name.startswith("litestream_") and name not in want:
        bad.append("unexpected metric " + name)
modes = {d["mode"] for d, _ in values.get("litestream_checkpoint_count", [])}
if not modes <= {"PASSIVE", "RESTART", "TRUNCATE"}:
    bad.append("checkpoint modes %s" % modes)
ops = {d["operation"] for d, _ in values.get("litestream_replica_operation_total", [])}
if ops != {"GET", "PUT", "LIST", "DELETE"}:
    bad.append("operations %s" % ops)
puts = [v for d, v in values.get("sluice_replica_requests_total", []) if d["operation"] == "PUT"]
if len(puts) != 2 or min(puts) <= 0:
    bad.append("PUT counts per replica: %s" % puts)
if [v for d, v in values["litestream_sync_count"]][0] <= 0:
    bad.append("litestream_sync_count is 0")
if types.get("sluice_replica_lag_distribution_seconds") != "histogram":
    bad.append("no lag histogram")
ready = [v for d, v in values["sluice_databases"] if d["state"] == "ready"]
if ready != [1]:
    bad.append("sluice_databases{state=ready} %s, want [1]" % ready)
if bad:
    sys.exit("\n".join(bad))
PY
echo "metrics: every spec 7 name with its labels, and sluice_*"

# Health and other paths.
[ "$(status /healthz)" = 200 ] || fail "/healthz $(cat "$T/body") while caught up"
for p in /debug/pprof/ /debug/pprof/heap / /metricsx /healthz/x; do
  [ "$(status "$p")" = 404 ] || fail "GET $p is not 404"
done
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$URL/metrics")
[ "$code" != 200 ] || fail "POST /metrics answered 200"
[ "$(curl -s -I -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] ||
  fail "HEAD /healthz is not 200"
echo "/healthz 200, other paths 404"

# Replica a becomes unreachable: a file takes its directory's place.  Its
# lag rises past health-max-sync-age; b is fine.
point_a "$T/nodir"
"$SQLWRITER" -db "$DB" -n 50 >/dev/null
unhealthy() { [ "$(status /healthz)" = 503 ]; }
wait_until 15 unhealthy || fail "/healthz stays $(status /healthz) with replica a failing"
grep -q "^behind .* a lag=" "$T/body" || { cat "$T/body"; fail "/healthz body does not name a"; }
grep -q "^ok .* b lag=" "$T/body" || { cat "$T/body"; fail "/healthz body: b not ok"; }
l1=$(lag a)
sleep 0.5
l2=$(lag a)
awk -v a="$l1" -v b="$l2" 'BEGIN { exit !(a >= 1 && b > a) }' ||
  fail "lag of a does not rise past 1s: $l1 then $l2"
[ "$(lag b)" = 0 ] || fail "lag of b is $(lag b) while b is reachable"
grep -q 'sluice_replica_upload_errors_total{db="[^"]*",name="a"} [1-9]' \
  <(curl -s "$URL/metrics") || fail "upload errors of a not counted"
echo "replica a unreachable: lag $l1 -> $l2 s, /healthz 503"

# The directory returns: a catches up (after its retry backoff).
point_a "$T/store-a"
healthy() { [ "$(status /healthz)" = 200 ]; }
wait_until 60 healthy || fail "/healthz still $(status /healthz) after a returned"
[ "$(lag a)" = 0 ] || fail "lag of a is $(lag a) after recovery"
echo "replica a back: /healthz 200, lag 0"

sluice_stop TERM
"$SLUICE" restore -config "$T/sluice.yml" -replica a -o "$T/restored.db" "$DB" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore from a"; }
assert_same_db "$DB" "$T/restored.db"
echo PASS
