#!/usr/bin/env bash
# disk_full_db.sh's "restart" case: the WAL restarts while the database's
# filesystem is full, so the new index has no shadow file at all.
exec bash "$SRCDIR/tests/e2e/disk_full_db.sh" restart
