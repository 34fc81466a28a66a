#!/bin/sh
# Init container (or any pre-start hook): restore each database that does
# not exist yet from its replica, before the application starts.  With
# -if-replica-exists a replica that holds no backup yet is not an error:
# the application then creates a fresh database.  Any other failure (store
# unreachable, bad credentials) exits non-zero, so the pod does not start
# on an empty database.
#
# Environment (defaults in brackets):
#   SLUICE_CONFIG  the config file [/etc/sluice.yml]
#   SLUICE_BIN     the sluice binary [/usr/local/bin/sluice]
#   DB_PATH        restore only this database [every database of the config]
set -eu

SLUICE_BIN=${SLUICE_BIN:-/usr/local/bin/sluice}
SLUICE_CONFIG=${SLUICE_CONFIG:-/etc/sluice.yml}
DB_PATH=${DB_PATH:-}

if [ -n "$DB_PATH" ]; then
  dbs=$DB_PATH
else
  dbs=$("$SLUICE_BIN" databases -config "$SLUICE_CONFIG" |
    awk 'NR > 1 { print $1 }')
fi

printf '%s\n' "$dbs" | while IFS= read -r db; do
  [ -n "$db" ] || continue
  if [ -e "$db" ]; then
    echo "restore-on-startup: $db exists, skipping restore"
    continue
  fi
  echo "restore-on-startup: $db not found, restoring from its replica"
  "$SLUICE_BIN" restore -config "$SLUICE_CONFIG" -if-db-not-exists \
    -if-replica-exists "$db"
done
