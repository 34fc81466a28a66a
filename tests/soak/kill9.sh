#!/usr/bin/env bash
# Soak: 200 kill -9 restarts of sluice under a writer whose application
# runs TRUNCATE checkpoints (each TRUNCATE completing while sluice is
# down), on a 70 MB database.  Not part of make check (a few minutes);
# the same test as tests/e2e/resync_kill9.sh, larger.
#
#   tests/soak/kill9.sh [BUILDDIR]      KILLS=200 DB_MB=70 by default
#
# Prints the report (generations, per-kill resync bytes, replica size vs
# database size) and exits non-zero if anything failed.
set -eu
SRCDIR=$(cd "$(dirname "$0")/../.." && pwd)
BUILDDIR=$(cd "${1:-$SRCDIR/build}" && pwd)
export SRCDIR BUILDDIR SLUICE=$BUILDDIR/sluice
export KILLS=${KILLS:-200} DB_MB=${DB_MB:-70}
export REPORT=${REPORT:-$BUILDDIR/soak-kill9.txt}
bash "$SRCDIR/tests/e2e/resync_kill9.sh"
echo "report: $REPORT"
