#!/usr/bin/env bash
# sluice against a hostile S3 endpoint (tests/tools/s3_hostile.py): nested
# XML, a continuation token that repeats or cycles, endless pages, a
# truncated body, a body that is not XML, wrong status codes, a socket that
# never answers.  Every CLI command ends with one clear error line naming
# the request and a nonzero exit, in bounded time; `replicate` keeps running
# and says what is wrong.
# Each case has its own server, config and database ($T/<case>/), and the
# cases run side by side (most of their time is waiting on deadlines and
# retries); their lines are printed in order at the end.
. "$(dirname "$0")/../lib/common.sh"

[ -x "$SLUICE" ] || skip "no sluice binary at $SLUICE"
command -v python3 >/dev/null || skip "no python3"
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent
HOSTILE=$SRCDIR/tests/tools/s3_hostile.py

# start_server CASE MODE: a server in MODE for CASE; sets D (the case's
# directory, with its sluice.yml and app.db) and SERVER (its pid).
start_server() {
  D=$T/$1
  mkdir -p "$D"
  python3 "$HOSTILE" --mode "$2" --log "$D/requests.log" >"$D/port" 2>"$D/server.err" &
  SERVER=$!
  wait_until 30 grep -q PORT "$D/port" || fail "$1: hostile server did not start"
  local port
  port=$(awk '{print $2}' "$D/port")
  sqlite3 "$D/app.db" 'PRAGMA journal_mode=wal; CREATE TABLE t(x); INSERT INTO t VALUES (1);' >/dev/null
  cat >"$D/sluice.yml" <<YML
shutdown-timeout: 3s
dbs:
  - path: $D/app.db
    replicas:
      - name: hostile
        type: s3
        bucket: hb
        path: app
        endpoint: http://127.0.0.1:$port
        region: us-east-1
        force-path-style: true
        access-key-id: AKIAHOSTILE
        secret-access-key: hostile-secret
        sync-interval: 100ms
YML
}

# cli MODE WANT CMD ARGS...: the command exits nonzero within 40 s with
# exactly one ERROR line (stdout and stderr) that holds WANT (an extended
# regex).  Runs in $D.
cli() {
  local mode=$1 want=$2 rc=0 start ms err=$D/err.$3
  shift 2
  start=$(date +%s%N)
  timeout 60 "$SLUICE" "$@" >"$err" 2>&1 || rc=$?
  ms=$((($(date +%s%N) - start) / 1000000))
  [ "$rc" -ne 0 ] || { cat "$err"; fail "$mode: $1 exited 0"; }
  [ "$rc" -ne 124 ] || fail "$mode: $1 still running after 60 s"
  [ "$rc" -lt 128 ] || { cat "$err"; fail "$mode: $1 died of signal $((rc - 128))"; }
  [ "$ms" -lt 40000 ] || fail "$mode: $1 took $ms ms"
  local n
  n=$(grep -c 'level=ERROR' "$err")
  [ "$n" -eq 1 ] || { cat "$err"; fail "$mode: $1: $n error lines, want 1"; }
  grep 'level=ERROR' "$err" | grep -Eq -- "$want" ||
    { cat "$err"; fail "$mode: $1: error line lacks /$want/"; }
  ! grep -q hostile-secret "$err" || fail "$mode: secret printed"
  echo "  $mode $1: rc=$rc ${ms}ms: $(grep 'level=ERROR' "$err" | sed 's/.*msg=//' | cut -c1-150)"
}

all_cli() { # mode want [extra flags]
  local mode=$1 want=$2
  shift 2
  cli "$mode" "$want" generations "$@" -config "$D/sluice.yml" "$D/app.db"
  cli "$mode" "$want" snapshots "$@" -config "$D/sluice.yml" "$D/app.db"
  cli "$mode" "$want" wal "$@" -config "$D/sluice.yml" "$D/app.db"
  cli "$mode" "$want" replicas "$@" -config "$D/sluice.yml" "$D/app.db"
  rm -rf "$D/restored"
  cli "$mode" "$want" restore "$@" -config "$D/sluice.yml" -o "$D/restored/db" "$D/app.db"
  [ ! -e "$D/restored/db" ] || fail "$mode: restore left a database"
}

# replicate MODE: keeps running, logs what is wrong, stops cleanly.
replicate() {
  local mode=$1 pid rc
  "$SLUICE" replicate -config "$D/sluice.yml" >>"$D/sluice.log" 2>&1 &
  pid=$!
  DAEMON=$pid
  if [ "$mode" != silent ]; then
    wait_until 30 grep -q 'level=ERROR' "$D/sluice.log" ||
      fail "replicate ($mode): nothing logged"
    grep 'level=ERROR' "$D/sluice.log" | grep -Eq "ListObjectsV2|GetObject .*lock.json" ||
      fail "replicate ($mode): the error does not name the request"
  else
    wait_until 15 grep -q 'GET' "$D/requests.log" || fail "replicate ($mode): no request"
    sleep 1
  fi
  kill -0 "$pid" 2>/dev/null || fail "replicate ($mode): the daemon died"
  if [ "$mode" = silent ]; then
    # Nothing was uploaded: after the shutdown timeout the daemon says so
    # and exits 1.
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    [ "$rc" -eq 1 ] || fail "replicate (silent): exit $rc after SIGTERM, want 1"
    grep -q "shutdown timeout reached: exiting with changes not uploaded" "$D/sluice.log" ||
      fail "replicate (silent): no shutdown message"
  else
    # It stops by itself; whether a listing still retrying at that moment
    # outlives the 3 s shutdown-timeout depends on the machine's load, and
    # then the daemon says so and exits 1 (nothing could be uploaded).
    kill -TERM "$pid"
    rc=0
    wait "$pid" || rc=$?
    case $rc in
    0) ;;
    1) grep -q "shutdown timeout reached: exiting with changes not uploaded" "$D/sluice.log" ||
         fail "replicate ($mode): exit 1 without saying why" ;;
    *) fail "replicate ($mode): exit $rc after SIGTERM" ;;
    esac
  fi
  echo "  replicate $mode: alive; $(grep -m1 'level=ERROR' "$D/sluice.log" | sed 's/.*msg=//' | cut -c1-150)"
}

# case_bg NAME MODE CHECK ARGS...: CHECK (all_cli, replicate, ...) in the
# background against a server of its own in MODE; its lines (and a
# failure's message, with the daemon's last lines) go to $T/NAME/out.
CASES=()
CASE_PIDS=()
case_bg() {
  local name=$1 mode=$2
  shift 2
  mkdir -p "$T/$name"
  (
    SERVER='' DAEMON=''
    trap 'kill -9 $SERVER $DAEMON 2>/dev/null' EXIT
    start_server "$name" "$mode"
    T=$D # (fail shows $T/sluice.log)
    "$@"
  ) >"$T/$name/out" 2>&1 &
  PIDS+=($!)
  CASE_PIDS+=($!)
  CASES+=("$name")
}
silent_default() {
  cli silent-default "no answer within the 30s deadline" generations -config "$D/sluice.yml" "$D/app.db"
}

LIST="ListObjectsV2 .*hb.*app/"
# The default deadline is 30 s: `generations` ends on its own (the longest
# case, so it starts first).
case_bg silent-default silent silent_default
case_bg nested nested all_cli nested "$LIST.*nested deeper than 64"
case_bg loop loop all_cli loop "$LIST.*repeats an earlier continuation token"
case_bg cycle cycle all_cli cycle "$LIST.*repeats an earlier continuation token"
SLUICE_LIST_MAX_PAGES=50 case_bg endless endless all_cli endless "$LIST.*not finished after 50 pages"
case_bg truncated truncated all_cli truncated "$LIST"
case_bg garbage garbage all_cli garbage "$LIST.*(not well-formed|not ListBucketResult)"
for code in 301 418 204; do
  case_bg "status-$code" "status:$code" all_cli "status:$code" "$LIST"
done
case_bg silent silent all_cli silent "$LIST.*no answer within the 3s deadline \\(raise it with -timeout\\)" -timeout 3s
# replicate: keeps running, logs what is wrong, stops cleanly.
for mode in nested loop truncated status:418 silent; do
  case_bg "replicate-${mode/:/-}" "$mode" replicate "$mode"
done

failed=0
for k in "${!CASES[@]}"; do
  rc=0
  wait "${CASE_PIDS[$k]}" || rc=$?
  cat "$T/${CASES[$k]}/out"
  [ "$rc" = 0 ] || { echo "FAIL: case ${CASES[$k]} (exit $rc)" >&2; failed=1; }
done
[ "$failed" = 0 ] || exit 1
echo "s3_hostile: ok"
