# shellcheck shell=bash
# Shared helpers for end-to-end tests (bash).  A test sources this file,
# then uses the real sluice binary ($SLUICE), real SQLite writers
# ($SQLWRITER) and, where needed, the real test servers.
#
# Environment (set by CTest): SLUICE, SRCDIR, BUILDDIR.
set -u
: "${SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${BUILDDIR:=$SRCDIR/build}"
: "${SLUICE:=$BUILDDIR/sluice}"
# Used by the tests that source this file.
# shellcheck disable=SC2034
SQLWRITER=$BUILDDIR/sqlwriter
# shellcheck disable=SC2034
FIXTURES=$SRCDIR/tests/fixtures/litestream-0.3.13
T=$(mktemp -d "${TMPDIR:-/tmp}/sluice-test.XXXXXX")
PIDS=()

cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  if [ -n "${KEEP_TMP:-}" ]; then
    echo "kept $T" >&2
  else
    # Deleted in the background, detached: the scale tests leave tens of
    # thousands of files, which take ext4 (mounted with discard, on a busy
    # disk) up to a minute to unlink, a minute CTest's slot would wait.
    setsid rm -rf "$T" </dev/null >/dev/null 2>&1 &
  fi
}
trap cleanup EXIT

# A watchdog: a test still running SLUICE_WATCHDOG seconds after it began
# (default 270, before CTest's 300 s limit kills it silently) prints its
# process tree, every sluice process's threads' stacks (gdb) and the tail
# of the daemon's log, so a hang shows where it is.  It only reports; the
# test goes on.  (Its sleep holds no pipe of CTest's: killed by cleanup.)
watchdog_report() {
  local top=$1 pids p
  echo "WATCHDOG: $(basename "$0") still running after ${SLUICE_WATCHDOG:-270} s" >&2
  pids=$(descendants "$top")
  # shellcheck disable=SC2086
  [ -z "$pids" ] || ps -o pid,ppid,etimes,stat,args -p "$(echo $pids | tr ' ' ,)" >&2
  for p in $pids; do
    case "$(cat "/proc/$p/comm" 2>/dev/null)" in
    sluice)
      echo "--- stacks of sluice pid $p ---" >&2
      command -v gdb >/dev/null &&
        timeout 60 gdb -p "$p" -batch -ex 'thread apply all bt' 2>&1 |
        grep -E '^(Thread|#)' >&2
      ;;
    esac
  done
  [ ! -f "$T/sluice.log" ] || { echo "--- tail of sluice.log ---" >&2; tail -20 "$T/sluice.log" >&2; }
}
descendants() { # pid: its descendants, one level after another
  local c
  for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done
}
if [ "${SLUICE_WATCHDOG:-270}" != 0 ]; then
  ( sleep "${SLUICE_WATCHDOG:-270}" >/dev/null 2>&1; watchdog_report $$ ) &
  PIDS+=("$!")
fi

fail() {
  echo "FAIL: $*" >&2
  if [ -f "$T/sluice.log" ]; then
    echo "--- last lines of sluice.log ---" >&2
    tail -n 40 "$T/sluice.log" >&2
  fi
  exit 1
}

skip() {
  echo "SKIP: $*" >&2
  exit 77
}

# wait_until SECONDS CMD...: polls CMD every 50 ms.
wait_until() {
  local limit=$1; shift
  local end=$(( $(date +%s%N) + limit * 1000000000 ))
  while [ "$(date +%s%N)" -lt "$end" ]; do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.05
  done
  return 1
}

# s3_mb ENDPOINT BUCKET: creates BUCKET on an S3 test server (moto, s3rver:
# both take an unsigned PUT).  (`aws s3api create-bucket` did it in seconds
# of CPU: the AWS CLI's start-up.)
s3_mb() {
  curl -sf -o /dev/null --max-time 30 -X PUT "$1/$2"
}

# s3_list [--keys] ENDPOINT BUCKET [PREFIX]: the objects under PREFIX, as
# `aws s3api list-objects-v2 --output json` prints them (or one key a
# line), from unsigned requests: for listings polled in a loop.
s3_list() {
  python3 "$SRCDIR/tests/tools/s3_list.py" "$@"
}

# sluice_start ARGS...: runs `sluice replicate ARGS` in the background,
# logging to $T/sluice.log; sets SLUICE_PID.
sluice_start() {
  "$SLUICE" replicate "$@" >>"$T/sluice.log" 2>&1 &
  SLUICE_PID=$!
  PIDS+=("$SLUICE_PID")
}

# sluice_stop [SIGNAL]: stops the daemon and checks it exited 0.
sluice_stop() {
  local sig=${1:-TERM} rc=0
  kill "-$sig" "$SLUICE_PID" 2>/dev/null
  wait "$SLUICE_PID" || rc=$?
  if [ "$sig" = TERM ] || [ "$sig" = INT ]; then
    [ "$rc" -eq 0 ] || fail "sluice exited $rc after SIG$sig"
  fi
  return 0
}

# dump DB: schema and rows, for comparisons.
dump() {
  sqlite3 "$1" .dump
}

# assert_same_db SOURCE RESTORED
assert_same_db() {
  local ic
  ic=$(sqlite3 "$2" 'PRAGMA integrity_check') || fail "cannot open $2"
  [ "$ic" = ok ] || fail "integrity_check of $2: $ic"
  dump "$1" >"$T/a.sql"
  dump "$2" >"$T/b.sql"
  if ! cmp -s "$T/a.sql" "$T/b.sql"; then
    diff "$T/a.sql" "$T/b.sql" | head -20 >&2
    fail "$2 differs from $1 ($(wc -l <"$T/a.sql") vs $(wc -l <"$T/b.sql") lines)"
  fi
}

# rows DB: number of rows in t.
rows() {
  sqlite3 "$1" 'SELECT count(*) FROM t'
}

# apply_manifest FIXTURE_DIR DEST_REPLICA: copies a fixture replica and
# sets each file's mtime from its MANIFEST (git keeps no mtimes).
apply_manifest() {
  local src=$1 dst=$2 f when
  mkdir -p "$dst"
  cp -r "$src/replica/." "$dst/"
  chmod -R u+w "$dst"
  while read -r f when; do
    touch -d "$when" "$dst/$f"
  done < <(grep '^generations/' "$src/MANIFEST")
}

# need_servers: makes sure the S3/Azure/GCS test servers answer (starting
# them once, under a lock, when the suite runner did not).
need_servers() {
  if curl -s -o /dev/null --max-time 1 http://127.0.0.1:4568/ &&
     curl -s -o /dev/null --max-time 1 http://127.0.0.1:10000/ &&
     curl -s -o /dev/null --max-time 1 http://127.0.0.1:9199/storage/v1/b/x/o; then
    return 0
  fi
  [ -d "$SRCDIR/tests/servers/node_modules" ] ||
    fail "test servers not installed: run make check (npm ci in tests/servers)"
  (
    flock 9
    if ! curl -s -o /dev/null --max-time 1 http://127.0.0.1:4568/; then
      # (9>&-: servers that kept the lock's fd would hold it for ever.)
      RUN=/tmp/sluice-test-servers "$SRCDIR/tests/servers/test-servers.sh" start >/dev/null 9>&-
    fi
  ) 9>/tmp/sluice-test-servers.lock
}
