#!/usr/bin/env bash
# What an operator reads: at the default log level a line shows uploads
# happening (rate-limited); `generations` never prints a negative lag; a
# SIGHUP reload logs the number of databases of the new configuration; the
# -h text of every command that reads a config names /etc/sluice.yml in the
# search order.
source "$SRCDIR/tests/lib/common.sh"

write_config() { # sync-interval
  cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: $1
YML
}
write_config 100ms
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 20 test -d "$T/replica/generations" || fail "no generation"

# 1. A new user inserts a row and sees it replicated at the info level.
sqlite3 "$T/app.db" "INSERT INTO t(k, v) VALUES(1, 'hello')"
wait_until 20 grep -q 'level=INFO msg="wal segments written: count=[0-9]* size=[0-9]* position=' \
  "$T/sluice.log" || fail "no info line for the upload"
# ... but not one line per upload: 40 uploads in ~4s give at most 2 lines.
for i in $(seq 40); do
  sqlite3 "$T/app.db" "INSERT INTO t(k, v) VALUES($i, 'x')"
  sleep 0.1
done
n=$(grep -c 'wal segments written' "$T/sluice.log")
[ "$n" -le 2 ] || fail "$n progress lines for ~40 uploads in 4s"
echo "progress lines: $n"

# 2. generations: the lag column is never negative, while writing or not.
"$SQLWRITER" -db "$T/app.db" -duration 2 -rate 200 >/dev/null &
w=$!
PIDS+=("$w")
for i in $(seq 10); do
  "$SLUICE" generations -config "$T/sluice.yml" "$T/app.db" >"$T/gens" ||
    fail "generations failed"
  awk 'NR > 1 && $3 ~ /^-/ { bad = 1 } END { exit bad }' "$T/gens" ||
    { cat "$T/gens"; fail "negative lag"; }
  sleep 0.2
done
wait "$w" || fail "writer"

# 3. SIGHUP: the count of databases in the configuration, unchanged or not.
kill -HUP "$SLUICE_PID"
wait_until 20 grep -q 'configuration reloaded: 1 databases (1 unchanged' "$T/sluice.log" ||
  fail "reload of an unchanged config: $(grep 'configuration reloaded' "$T/sluice.log")"
write_config 200ms
kill -HUP "$SLUICE_PID"
wait_until 20 grep -q 'configuration reloaded: 1 databases (0 unchanged, 1 restarted' "$T/sluice.log" ||
  fail "reload of a changed config: $(grep 'configuration reloaded' "$T/sluice.log")"
grep 'configuration reloaded: 0 databases' "$T/sluice.log" && fail "0 databases logged"
"$SQLWRITER" -db "$T/app.db" -n 20 >/dev/null
sluice_stop
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"

# 4. The config search order in every -h text.
for cmd in restore generations snapshots wal databases replicas replicate \
  "config check"; do
  # shellcheck disable=SC2086
  "$SLUICE" $cmd -h >"$T/help" 2>&1
  grep -q '/etc/sluice.yml' "$T/help" || fail "$cmd -h omits /etc/sluice.yml"
  grep -q '/etc/litestream.yml' "$T/help" || fail "$cmd -h omits /etc/litestream.yml"
done
echo PASS
