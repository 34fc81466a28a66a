#!/usr/bin/env bash
# Upload and download throughput of sluice's SFTP backend to a local OpenSSH
# server (127.0.0.1, its own host key and port), against OpenSSH's own sftp
# client moving the same file to the same server.  Best of RUNS, MB/s.
#
#   bench/sftp_throughput.sh [BUILD_DIR]      SIZE_MB (default 256), RUNS (3)
# Run it in a private network namespace: unshare -n sh -c 'ip link set lo up && ...'
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILDDIR=${1:-$ROOT/build}
SRCDIR=$ROOT
SIZE_MB=${SIZE_MB:-256}
RUNS=${RUNS:-3}
source "$ROOT/tests/lib/common.sh"
source "$ROOT/tests/lib/sshd.sh"
sshd_start
trap 'sshd_stop; cleanup' EXIT
TOOL=$BUILDDIR/core_sftpobj
URL=sftp://root@127.0.0.1:$SSHD_PORT$T/remote
mkdir -p "$T/remote"
head -c $((SIZE_MB << 20)) /dev/urandom >"$T/src.bin"

best() { sort -g | tail -1; }
mbps() { awk -v b="$1" -v s="$2" 'BEGIN { printf "%.1f", b / 1048576 / s }'; }
now() { date +%s.%N; }

sl_put=() sl_get=() cli_put=() cli_get=()
for i in $(seq "$RUNS"); do
  read -r b s < <("$TOOL" "$URL" "$SSHD_KEY" "$SSHD_KNOWN_HOSTS" put obj.bin "$T/src.bin") ||
    fail "sluice put failed"
  sl_put+=("$(mbps "$b" "$s")")
  rm -f "$T/out.bin"
  read -r b s < <("$TOOL" "$URL" "$SSHD_KEY" "$SSHD_KNOWN_HOSTS" get obj.bin "$T/out.bin") ||
    fail "sluice get failed"
  cmp -s "$T/src.bin" "$T/out.bin" || fail "sluice get: different bytes"
  sl_get+=("$(mbps "$b" "$s")")
  t0=$(now)
  sftp_cli "put $T/src.bin $T/remote/cli.bin" >/dev/null || fail "sftp put failed"
  cli_put+=("$(mbps $((SIZE_MB << 20)) "$(echo "$(now) - $t0" | bc)")")
  t0=$(now)
  sftp_cli "get $T/remote/cli.bin $T/cli-out.bin" >/dev/null || fail "sftp get failed"
  cli_get+=("$(mbps $((SIZE_MB << 20)) "$(echo "$(now) - $t0" | bc)")")
  cmp -s "$T/src.bin" "$T/cli-out.bin" || fail "sftp get: different bytes"
  rm -f "$T/remote/cli.bin" "$T/cli-out.bin"
done
printf '| %s MiB, best of %s | sluice (libssh2) | OpenSSH sftp | ratio |\n|---|---|---|---|\n' "$SIZE_MB" "$RUNS"
p1=$(printf '%s\n' "${sl_put[@]}" | best) p2=$(printf '%s\n' "${cli_put[@]}" | best)
g1=$(printf '%s\n' "${sl_get[@]}" | best) g2=$(printf '%s\n' "${cli_get[@]}" | best)
printf '| upload MB/s | %s | %s | %.2f |\n' "$p1" "$p2" "$(echo "$p1 / $p2" | bc -l)"
printf '| download MB/s | %s | %s | %.2f |\n' "$g1" "$g2" "$(echo "$g1 / $g2" | bc -l)"
echo "all runs: sluice put ${sl_put[*]}; get ${sl_get[*]}; sftp put ${cli_put[*]}; get ${cli_get[*]}"
