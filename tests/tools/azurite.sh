# shellcheck shell=bash
# Helpers for end-to-end tests against Azurite (bash; sourced after
# tests/lib/common.sh).  Requests are signed with Shared Key by openssl, as in
# /work/shared/test-servers/az_curl.sh, independently of sluice's own signer.
#   AZ_PORT     Azurite's blob port (default 10000)
#   AZ_ACCOUNT  devstoreaccount1, AZ_KEY its published development key
AZ_PORT=${AZ_PORT:-10000}
AZ_ACCOUNT=devstoreaccount1
AZ_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
AZ_ENDPOINT=http://127.0.0.1:$AZ_PORT/$AZ_ACCOUNT

# az_up: Azurite answers on $AZ_PORT.
az_up() {
  curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$AZ_PORT/"
}

# az METHOD PATH CANON_QUERY URL_QUERY [curl args...] -> curl output
#   PATH: /container[/blob]; CANON_QUERY e.g. '\ncomp:list\nrestype:container'
az() {
  local method=$1 path=$2 cq=$3 uq=$4
  shift 4
  local date hexkey sts sig
  date=$(LC_ALL=C date -u '+%a, %d %b %Y %H:%M:%S GMT')
  hexkey=$(printf '%s' "$AZ_KEY" | base64 -d | od -An -v -tx1 | tr -d ' \n')
  sts=$(printf '%s\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:%s\nx-ms-version:2021-08-06\n/%s/%s%s%b' \
    "$method" "$date" "$AZ_ACCOUNT" "$AZ_ACCOUNT" "$path" "$cq")
  sig=$(printf '%s' "$sts" | openssl dgst -sha256 -mac HMAC -macopt "hexkey:$hexkey" -binary | base64 -w0)
  curl -sS -X "$method" -H "x-ms-date: $date" -H "x-ms-version: 2021-08-06" \
    -H "Authorization: SharedKey $AZ_ACCOUNT:$sig" "$@" "$AZ_ENDPOINT$path${uq:+?$uq}"
}

# az_container_create NAME / az_container_delete NAME: prints the status.
az_container_create() {
  az PUT "/$1" '\nrestype:container' 'restype=container' -H 'Content-Length: 0' \
    -o /dev/null -w '%{http_code}'
}
az_container_delete() {
  az DELETE "/$1" '\nrestype:container' 'restype=container' -o /dev/null -w '%{http_code}'
}

# az_list CONTAINER PREFIX: blob names, one per line (first 5000).
az_list() {
  local enc
  enc=$(printf '%s' "$2" | sed 's|/|%2F|g')
  az GET "/$1" "\ncomp:list\nprefix:$2\nrestype:container" \
    "restype=container&comp=list&prefix=$enc" | grep -o '<Name>[^<]*</Name>' |
    sed 's|</\?Name>||g'
}

# az_start_own DIR PORT: starts a private Azurite (for fault tests) storing
# in DIR; sets AZ_OWN_PID.  az_stop_own [SIGNAL]: stops it (TERM by default:
# Azurite keeps its metadata in LokiJS and saves it every few seconds and
# on exit, so after kill -9 recently created containers and blobs are gone,
# acknowledged or not).
az_start_own() {
  local modules=$SRCDIR/tests/servers/node_modules
  [ -f "$modules/azurite/dist/src/blob/main.js" ] || return 1
  mkdir -p "$1"
  node "$modules/azurite/dist/src/blob/main.js" --blobHost 127.0.0.1 \
    --blobPort "$2" --location "$1" --silent --disableTelemetry \
    >>"$1/azurite.log" 2>&1 &
  AZ_OWN_PID=$!
  PIDS+=("$AZ_OWN_PID")
  # (90 s: beside a loaded CI machine's builds it once took over 30.)
  wait_until 90 curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$2/"
}
az_stop_own() {
  kill "-${1:-TERM}" "$AZ_OWN_PID" 2>/dev/null
  wait "$AZ_OWN_PID" 2>/dev/null
  return 0
}
