#!/bin/sh
# make run: replicate a demo database (created if missing) to ./demo/replica
# in the foreground until Ctrl-C.
set -eu
cd "$(dirname "$0")/.."
SLUICE=${1:-build/sluice}
mkdir -p demo
if [ ! -f demo/demo.db ]; then
  sqlite3 demo/demo.db "PRAGMA journal_mode=wal;
    CREATE TABLE notes(id INTEGER PRIMARY KEY, body TEXT,
                       at TEXT DEFAULT CURRENT_TIMESTAMP);
    INSERT INTO notes(body) VALUES ('hello from sluice');" >/dev/null
fi
cat <<EOF
sluice is replicating demo/demo.db to demo/replica (Ctrl-C to stop).
In another terminal:
  sqlite3 demo/demo.db "INSERT INTO notes(body) VALUES ('more')"
  $SLUICE generations -config deploy/examples/demo.yml demo/demo.db
  $SLUICE restore -config deploy/examples/demo.yml -o /tmp/demo-restored.db demo/demo.db
EOF
exec "$SLUICE" replicate -config deploy/examples/demo.yml
