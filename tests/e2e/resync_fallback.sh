#!/usr/bin/env bash
# When continuity is lost (the application's TRUNCATE checkpoint completed
# while sluice was stopped), a resync needs intact local state.  Each kind
# of damage must give a new generation whose log line says why, and the
# restore must still equal the source:
#   - the page map corrupt (a flipped byte)       -> "checksum mismatch"
#   - the page map missing                        -> "page map missing"
#   - the page map ahead of the shadow WAL (the shadow lost its tail, as
#     after a power loss)                         -> "ahead of the shadow wal"
#   - the database file replaced by a copy         -> "database file replaced"
# and, as a control, intact state resyncs in the same generation.
source "$SRCDIR/tests/lib/common.sh"

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML
META=$T/.app.db-litestream
MAP=$META/sluice-pagemap
"$SQLWRITER" -db "$T/app.db" -n 2 -rows 500 -size 500 >/dev/null

gens() { ls "$T/replica/generations" | wc -l; }
logged() { grep -q "$1" "$T/sluice.log"; }

# One round: sluice runs while the application writes, stops; DAMAGE runs;
# the application writes more and TRUNCATEs (sluice is down, so it
# completes); sluice starts again and must log EXPECT.
round() { # NAME DAMAGE EXPECT
  local name=$1 damage=$2 expect=$3
  : >"$T/sluice.log"
  sluice_start -config "$T/sluice.yml"
  wait_until 30 logged "resuming replication\|asleep from the start" || fail "$name: no resume"
  "$SQLWRITER" -db "$T/app.db" -n 40 -rows 5 -update-every 2 >/dev/null ||
    fail "$name: writer failed"
  sluice_stop
  [ -s "$MAP" ] || fail "$name: no page map saved at shutdown"
  $damage
  "$SQLWRITER" -db "$T/app.db" -n 40 -rows 5 -update-every 2 \
    -truncate-every 40 >/dev/null || fail "$name: writer failed"
  [ ! -s "$T/app.db-wal" ] || fail "$name: the application's TRUNCATE did not complete"
  : >"$T/sluice.log"
  local before
  before=$(gens)
  sluice_start -config "$T/sluice.yml"
  wait_until 30 logged "$expect" || fail "$name: expected a log line with \"$expect\""
  wait_until 30 logged "resuming replication\|snapshot written" ||
    fail "$name: the replica did not resume"
  sluice_stop
  rm -f "$T/restored.db"
  "$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
    >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "$name: restore failed"; }
  assert_same_db "$T/app.db" "$T/restored.db"
  echo "$name: $(grep -o 'resync: .*of the same generation\|new generation: .*reason=[^"]*' "$T/sluice.log" | head -1); generations $before -> $(gens)"
}

first_start() {
  sluice_start -config "$T/sluice.yml"
  wait_until 30 logged "snapshot written" || fail "no snapshot uploaded"
  sluice_stop
}
first_start

none() { :; }
round intact none "pages differ from the replicated state"
[ "$(gens)" -eq 1 ] || fail "intact state: $(gens) generations"

flip() { # invert one byte of a page hash (setting it to 0xff would be a no-op 1 time in 256)
  local b; b=$(od -An -tu1 -j100 -N1 "$MAP" | tr -d " ")
  printf "$(printf "\\%03o" $((255 - b)))" | dd of="$MAP" bs=1 seek=100 conv=notrunc 2>/dev/null
}
round corrupt flip "reason=wal header mismatch.*; page map .*checksum mismatch"
[ "$(gens)" -eq 2 ] || fail "corrupt map: $(gens) generations, want 2"

drop() { rm -f "$MAP"; }
round missing drop "reason=wal header mismatch.*; page map missing"
[ "$(gens)" -eq 3 ] || fail "missing map: $(gens) generations, want 3"

# The last shadow file loses its last transaction (its last frame cut in
# half): the map saved at shutdown now names a position the shadow no
# longer reaches.
cut_shadow() {
  local gen last
  gen=$(cat "$META/generation")
  last=$(ls "$META/generations/$gen/wal/" | sort | tail -1)
  local f=$META/generations/$gen/wal/$last
  truncate -s $(( $(stat -c %s "$f") - 2000 )) "$f"
}
round ahead cut_shadow "ahead of the shadow wal"
[ "$(gens)" -eq 4 ] || fail "map ahead: $(gens) generations, want 4"

replace_db() { cp "$T/app.db" "$T/copy.db" && mv "$T/copy.db" "$T/app.db"; }
round replaced replace_db "reason=wal header mismatch.*; page map database file replaced\|reason=database file replaced"
[ "$(gens)" -eq 5 ] || fail "replaced db: $(gens) generations, want 5"

round intact-again none "pages differ from the replicated state"
[ "$(gens)" -eq 5 ] || fail "intact state again: $(gens) generations"
echo PASS
