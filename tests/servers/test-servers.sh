#!/usr/bin/env bash
# Start/stop local stand-ins for S3, Azure Blob and GCS on 127.0.0.1 only.
#   test-servers.sh start   -> starts all, waits until each answers, writes $RUN/*.pid
#   test-servers.sh stop    -> kills exactly the PIDs it started
# Env: TOOLS (dir holding node_modules from tools/package.json), RUN (state dir)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOOLS=${TOOLS:-$HERE}
RUN=${RUN:-/tmp/test-servers}
S3_PORT=${S3_PORT:-4568}; MOTO_PORT=${MOTO_PORT:-5000}; AZ_PORT=${AZ_PORT:-10000}; GCS_PORT=${GCS_PORT:-9199}

wait_http() { # name url
  local i
  for i in $(seq 1 300); do
    if curl -s -o /dev/null --max-time 1 "$2"; then echo "$1 up after ~$((i/10)).$((i%10))s"; return 0; fi
    sleep 0.1
  done
  echo "$1 did not come up; log:" >&2; cat "$RUN/$1.log" >&2; return 1
}

# The servers stand in for remote stores, which have CPUs of their own:
# at nice -5 (when allowed; else nice only warns, into the log) a loaded
# machine slows the tests' own processes, not every request they make.
# (Azurite spends ~8 ms of CPU on a PUT: test_abs_live's 5,003 PUTs ran
# past its 300 s limit at load 25.)  SERVER_NICE to change.
NICE="nice -n ${SERVER_NICE:--5}"

start() {
  mkdir -p "$RUN/s3" "$RUN/azurite" "$RUN/gcs-tmp"
  # S3 with SigV4 checking (@20minutes/s3rver 4.0.4): DES continuation tokens need the legacy provider
  NODE_OPTIONS=--openssl-legacy-provider S3_PORT=$S3_PORT S3_DIR="$RUN/s3" S3_BUCKETS=testbucket TOOLS=$TOOLS \
      nohup $NICE node "$HERE/s3rver-run.js" > "$RUN/s3rver.log" 2>&1 &
  echo $! > "$RUN/s3rver.pid"
  # S3 (moto, preinstalled in pyenv python on the 'c' image; optional)
  if python3 -c 'import moto.server' 2>/dev/null; then
    nohup $NICE python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" > "$RUN/moto.log" 2>&1 &
    echo $! > "$RUN/moto.pid"
  fi
  # Azure Blob (Azurite)
  nohup $NICE node "$TOOLS/node_modules/azurite/dist/src/blob/main.js" --blobHost 127.0.0.1 --blobPort "$AZ_PORT" \
      --location "$RUN/azurite" --silent --disableTelemetry > "$RUN/azurite.log" 2>&1 &
  echo $! > "$RUN/azurite.pid"
  # GCS JSON API (firebase-tools storage emulator, started without the CLI / Java)
  TMPDIR="$RUN/gcs-tmp" GCS_PORT=$GCS_PORT TOOLS=$TOOLS nohup $NICE node "$HERE/gcs-emu.js" > "$RUN/gcs.log" 2>&1 &
  echo $! > "$RUN/gcs.pid"

  wait_http s3rver "http://127.0.0.1:$S3_PORT/"
  [ -f "$RUN/moto.pid" ] && wait_http moto "http://127.0.0.1:$MOTO_PORT/moto-api/"
  wait_http azurite "http://127.0.0.1:$AZ_PORT/"
  wait_http gcs "http://127.0.0.1:$GCS_PORT/storage/v1/b/healthcheck/o"
}

stop() {
  local f
  for f in "$RUN"/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
