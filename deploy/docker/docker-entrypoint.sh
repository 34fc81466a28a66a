#!/bin/sh
# Entrypoint of the sluice image.
#
#   docker run IMAGE                     restore missing databases, replicate
#   docker run IMAGE app --flag ...      restore missing databases, then run
#                                        the application under
#                                        `sluice replicate -exec`
#   docker run IMAGE restore|wal|...     any sluice command, as is
#
# A database that does not exist is restored from its replica before
# anything starts (`restore -if-db-not-exists -if-replica-exists`: a
# replica with no backup yet leaves the path empty for the application to
# create).  A failed restore (e.g. the store is unreachable) exits non-zero
# instead of starting the application on an empty database.
#
# Environment (defaults in brackets):
#   SLUICE_CONFIG  the config file [/etc/sluice.yml]
#   SLUICE_BIN     the sluice binary [/usr/local/bin/sluice]
#   DB_PATH        restore only this database [every database of the config]
set -eu

SLUICE_BIN=${SLUICE_BIN:-/usr/local/bin/sluice}
SLUICE_CONFIG=${SLUICE_CONFIG:-/etc/sluice.yml}
DB_PATH=${DB_PATH:-}
export SLUICE_CONFIG

log() {
  printf 'docker-entrypoint: %s\n' "$*" >&2
}

# quote ARG: ARG in single quotes for -exec, which splits its value like a
# shell without expansion.
quote() {
  printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

restore_missing() {
  if [ -n "$DB_PATH" ]; then
    dbs=$DB_PATH
  else
    dbs=$("$SLUICE_BIN" databases -config "$SLUICE_CONFIG" |
      awk 'NR > 1 { print $1 }')
  fi
  printf '%s\n' "$dbs" | while IFS= read -r db; do
    [ -n "$db" ] || continue
    if [ -e "$db" ]; then
      log "$db exists, not restoring"
      continue
    fi
    log "$db does not exist: restoring it from its replica"
    "$SLUICE_BIN" restore -config "$SLUICE_CONFIG" -if-db-not-exists \
      -if-replica-exists "$db"
  done
}

case "${1:-}" in
config | databases | generations | replicas | replicate | restore | \
  snapshots | version | wal)
  exec "$SLUICE_BIN" "$@"
  ;;
esac

restore_missing

if [ $# -eq 0 ]; then
  exec "$SLUICE_BIN" replicate -config "$SLUICE_CONFIG"
fi
cmd=""
for arg in "$@"; do
  cmd="$cmd $(quote "$arg")"
done
exec "$SLUICE_BIN" replicate -config "$SLUICE_CONFIG" -exec "${cmd# }"
