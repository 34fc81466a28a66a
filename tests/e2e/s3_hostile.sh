#!/usr/bin/env bash
# sluice against a hostile S3 endpoint (tests/tools/s3_hostile.py): nested
# XML, a continuation token that repeats or cycles, endless pages, a
# truncated body, a body that is not XML, wrong status codes, a socket that
# never answers.  Every CLI command ends with one clear error line naming
# the request and a nonzero exit, in bounded time; `replicate` keeps running
# and says what is wrong.
. "$(dirname "$0")/../lib/common.sh"

[ -x "$SLUICE" ] || skip "no sluice binary at $SLUICE"
command -v python3 >/dev/null || skip "no python3"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent
HOSTILE=$SRCDIR/tests/tools/s3_hostile.py
SERVER=

start_server() { # mode
  [ -z "$SERVER" ] || { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null; }
  python3 "$HOSTILE" --mode "$1" --log "$T/requests.log" >"$T/port" 2>"$T/server.err" &
  SERVER=$!
  PIDS+=($!)
  wait_until 10 grep -q PORT "$T/port" || fail "hostile server did not start"
  PORT=$(awk '{print $2}' "$T/port")
  cat >"$T/sluice.yml" <<YML
shutdown-timeout: 3s
dbs:
  - path: $T/app.db
    replicas:
      - name: hostile
        type: s3
        bucket: hb
        path: app
        endpoint: http://127.0.0.1:$PORT
        region: us-east-1
        force-path-style: true
        access-key-id: AKIAHOSTILE
        secret-access-key: hostile-secret
        sync-interval: 100ms
YML
}

sqlite3 "$T/app.db" 'PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);' >/dev/null

# cli MODE WANT CMD ARGS...: the command exits nonzero within 40 s with
# exactly one ERROR line (stdout and stderr) that holds WANT (an extended regex).
cli() {
  local mode=$1 want=$2 rc=0 start ms
  shift 2
  start=$(date +%s%N)
  timeout 60 "$SLUICE" "$@" >"$T/err" 2>&1 || rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  [ "$rc" -ne 0 ] || { cat "$T/err"; fail "$mode: $1 exited 0"; }
  [ "$rc" -ne 124 ] || fail "$mode: $1 still running after 60 s"
  [ "$rc" -lt 128 ] || { cat "$T/err"; fail "$mode: $1 died of signal $((rc - 128))"; }
  [ "$ms" -lt 40000 ] || fail "$mode: $1 took $ms ms"
  local n
  n=$(grep -c 'level=ERROR' "$T/err")
  [ "$n" -eq 1 ] || { cat "$T/err"; fail "$mode: $1: $n error lines, want 1"; }
  grep 'level=ERROR' "$T/err" | grep -Eq -- "$want" ||
    { cat "$T/err"; fail "$mode: $1: error line lacks /$want/"; }
  ! grep -q hostile-secret "$T/err" || fail "$mode: secret printed"
  echo "  $mode $1: rc=$rc ${ms}ms: $(grep 'level=ERROR' "$T/err" | sed 's/.*msg=//' | cut -c1-150)"
}

all_cli() { # mode want [extra flags]
  local mode=$1 want=$2
  shift 2
  cli "$mode" "$want" generations "$@" -config "$T/sluice.yml" "$T/app.db"
  cli "$mode" "$want" snapshots "$@" -config "$T/sluice.yml" "$T/app.db"
  cli "$mode" "$want" wal "$@" -config "$T/sluice.yml" "$T/app.db"
  cli "$mode" "$want" replicas "$@" -config "$T/sluice.yml" "$T/app.db"
  rm -rf "$T/restored"
  cli "$mode" "$want" restore "$@" -config "$T/sluice.yml" -o "$T/restored/db" "$T/app.db"
  [ ! -e "$T/restored/db" ] || fail "$mode: restore left a database"
}

LIST="ListObjectsV2 .*hb.*app/"
start_server nested
all_cli nested "$LIST.*nested deeper than 64"
start_server loop
all_cli loop "$LIST.*repeats an earlier continuation token"
start_server cycle
all_cli cycle "$LIST.*repeats an earlier continuation token"
start_server endless
SLUICE_LIST_MAX_PAGES=50 all_cli endless "$LIST.*not finished after 50 pages"
start_server truncated
all_cli truncated "$LIST"
start_server garbage
all_cli garbage "$LIST.*(not well-formed|not ListBucketResult)"
for code in 301 418 204; do
  start_server "status:$code"
  all_cli "status:$code" "$LIST"
done
start_server silent
all_cli silent "$LIST.*no answer within the 3s deadline \\(raise it with -timeout\\)" -timeout 3s
# The default deadline is 30 s: `generations` ends on its own.
cli silent-default "no answer within the 30s deadline" generations -config "$T/sluice.yml" "$T/app.db"

# replicate: keeps running, logs what is wrong, stops cleanly.
for mode in nested loop truncated status:418 silent; do
  start_server "$mode"
  : >"$T/sluice.log"
  sluice_start -config "$T/sluice.yml"
  if [ "$mode" != silent ]; then
    wait_until 30 grep -q 'level=ERROR' "$T/sluice.log" ||
      fail "replicate ($mode): nothing logged"
    grep 'level=ERROR' "$T/sluice.log" | grep -Eq "ListObjectsV2|GetObject .*lock.json" ||
      fail "replicate ($mode): the error does not name the request"
  else
    wait_until 15 grep -q 'GET' "$T/requests.log" || fail "replicate ($mode): no request"
    sleep 1
  fi
  kill -0 "$SLUICE_PID" 2>/dev/null || fail "replicate ($mode): the daemon died"
  if [ "$mode" = silent ]; then
    # Nothing was uploaded: after the shutdown timeout the daemon says so
    # and exits 1.
    kill -TERM "$SLUICE_PID"
    rc=0
    wait "$SLUICE_PID" || rc=$?
    [ "$rc" -eq 1 ] || fail "replicate (silent): exit $rc after SIGTERM, want 1"
    grep -q "shutdown timeout reached: exiting with changes not uploaded" "$T/sluice.log" ||
      fail "replicate (silent): no shutdown message"
  else
    # It stops by itself; whether a listing still retrying at that moment
    # outlives the 3 s shutdown-timeout depends on the machine's load, and
    # then the daemon says so and exits 1 (nothing could be uploaded).
    kill -TERM "$SLUICE_PID"
    rc=0
    wait "$SLUICE_PID" || rc=$?
    case $rc in
    0) ;;
    1) grep -q "shutdown timeout reached: exiting with changes not uploaded" "$T/sluice.log" ||
         fail "replicate ($mode): exit 1 without saying why" ;;
    *) fail "replicate ($mode): exit $rc after SIGTERM" ;;
    esac
  fi
  echo "  replicate $mode: alive; $(grep -m1 'level=ERROR' "$T/sluice.log" | sed 's/.*msg=//' | cut -c1-150)"
done
echo "s3_hostile: ok"
