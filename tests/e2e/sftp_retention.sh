#!/usr/bin/env bash
# retention.sh's case on SFTP (a real OpenSSH server on 127.0.0.1):
# snapshot-interval creates snapshots on time; retention deletes snapshots
# older than the retention period and the WAL segments below the oldest
# snapshot kept, never the last snapshot; deleted generations and
# directories leave nothing behind; what is left restores to the source.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/sshd.sh"
sshd_start
trap 'sshd_stop; cleanup' EXIT

source "$SRCDIR/tests/lib/retention_case.sh"

mkdir -p "$T/remote"
run_retention_case sftp "sftp://root@127.0.0.1:$SSHD_PORT$T/remote/app" \
  "        key-path: $SSHD_KEY
        host-key-path: $SSHD_KNOWN_HOSTS
        snapshot-wal-factor: 0 # snapshots by time only here"
# Every WAL directory left holds segments at or above its generation's
# oldest snapshot, and no empty directory is left by the deletes.
[ -z "$(find "$T/remote" -mindepth 1 -type d -empty)" ] ||
  fail "empty directories left: $(find "$T/remote" -mindepth 1 -type d -empty)"
[ -z "$(find "$T/remote" -name '*.tmp')" ] || fail "temporary files left"
echo PASS
