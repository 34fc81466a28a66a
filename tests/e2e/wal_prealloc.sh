#!/usr/bin/env bash
# A writer that never leaves a quiet moment, synchronous=FULL: the first
# write-locked checkpoint grows the WAL file to 8 x min-checkpoint-page-count
# pages with zeros past its last frame (engine.c, wal_preallocate), so later
# lifetimes overwrite it in place.  Those zeros are no frame: sluice killed
# with -9 right after and started again continues the same generation, the
# application reopens a sound database, and the restore equals the source.
# Then, quiet, the WAL is given back (a checkpoint once quiet); and an
# application that limits its WAL's size is not fought.
source "$SRCDIR/tests/lib/common.sh"

cat >"$T/sluice.yml" <<YML
logging:
  level: debug
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 20 test -d "$T/replica/generations" || fail "no generation"
gen=$(ls "$T/replica/generations")

# The default min-checkpoint-page-count, 1,000 pages of 4,096 bytes:
# 8 x 1,000 frames of 4,120 bytes, rounded up to 1 MiB: 32 MiB (a lifetime
# between write-locked checkpoints, at 4,000 frames, is shorter).
want=$((32 << 20))
"$SQLWRITER" -db "$T/app.db" -duration 30 -sync FULL >"$T/w1.out" &
WRITER=$!
PIDS+=("$WRITER")
wait_until 30 grep -q "wal file grown from [0-9]* to $want bytes" "$T/sluice.log" ||
  fail "the WAL was not grown under the write lock: $(grep -c checkpoint "$T/sluice.log") checkpoint lines"
grep -m1 "wal file grown" "$T/sluice.log"
sleep 1
size=$(stat -c %s "$T/app.db-wal")
[ "$size" -ge "$want" ] || fail "WAL file of $size bytes while the writer runs, not $want"

# kill -9 with zeros past the WAL's last frame, the writer still going.
kill -9 "$SLUICE_PID"
wait "$SLUICE_PID" 2>/dev/null
sluice_start -config "$T/sluice.yml"
kill "$WRITER" 2>/dev/null
wait "$WRITER" 2>/dev/null
"$SQLWRITER" -db "$T/app.db" -n 200 -rows 3 >"$T/w2.out" || fail "writer after the restart"
[ "$(sqlite3 "$T/app.db" 'PRAGMA integrity_check')" = ok ] || fail "source not ok"

# Quiet: the idle checkpoint gives the space back (to 1,000 frames).
wait_until 20 sh -c "[ \$(stat -c %s '$T/app.db-wal') -le $((1000 * 4120 + 32)) ]" ||
  fail "WAL of $(stat -c %s "$T/app.db-wal") bytes after the writer stopped"

# An application that limits its WAL (journal_size_limit 4 MiB) cuts the
# zeros at its next restart: sluice notices at its next write-locked
# checkpoint and does not grow the file again (not once a lifetime).
before=$(grep -c "wal file grown" "$T/sluice.log")
"$SQLWRITER" -db "$T/app.db" -duration 30 -sync FULL -journal-size-limit 4194304 >"$T/w3.out" &
WRITER=$!
PIDS+=("$WRITER")
wait_until 30 grep -q "another process limits its size; not growing it again" "$T/sluice.log" ||
  fail "a WAL cut by the application's journal_size_limit was not noticed"
sleep 2
kill "$WRITER" 2>/dev/null
wait "$WRITER" 2>/dev/null
grown=$(($(grep -c "wal file grown" "$T/sluice.log") - before))
[ "$grown" -eq 1 ] || fail "with the application's journal_size_limit the WAL was grown $grown times"
grep -m1 "not growing it again" "$T/sluice.log"

sluice_stop
[ "$(ls "$T/replica/generations")" = "$gen" ] ||
  fail "generations: $(ls "$T/replica/generations" | tr '\n' ' '); $(grep -i 'generation' "$T/sluice.log" | head -3)"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
echo "one generation, $(rows "$T/restored.db") rows restored; $(cat "$T/w2.out")"
echo PASS
