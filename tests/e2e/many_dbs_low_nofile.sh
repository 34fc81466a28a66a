#!/usr/bin/env bash
# 1,200 databases in one `dir:` entry under `ulimit -n 1024` (hard limit
# too, so sluice cannot raise it): more databases than descriptors, and
# far more than fit awake (10 fds) or in light sleep (3): one warning line
# with the numbers, no error, every database replicated (most in deep
# sleep, holding no fd), a write to 120 of them while they sleep, just
# before a clean stop, and after it every one restores (`restore -o OUTDIR
# DIR`) with all its rows, in 1 generation.  Under the dir entry's one
# lease, with a short TTL: its renewals must not wait behind the start's
# and the stop's thousands of pool jobs (they did: the lease lapsed and
# the last commits of the databases woken at the stop were not uploaded).
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/many_dbs.sh"

N=${MANY_DBS:-1200}
NOFILE=1024
make_dbs "$T/dbs" "$N" 5 3

# lease-ttl 6s: renewed every 2 s, valid 5 s after each write began.
cat >"$T/sluice.yml" <<YML
shutdown-timeout: 5m
dbs:
  - dir: $T/dbs
    pattern: "*.db"
    replica:
      url: file://$T/rep
      sync-interval: 100ms
      lease-ttl: 6s
YML

bash -c 'ulimit -n "$1" && exec "$2" replicate -config "$3"' _ "$NOFILE" \
  "$SLUICE" "$T/sluice.yml" >>"$T/sluice.log" 2>&1 &
SLUICE_PID=$!
PIDS+=("$SLUICE_PID")

# Replicated: a WAL segment in the replica for every database.
replicated() {
  local n
  n=$(find "$T/rep" -path '*/wal/*' -name '*.wal.lz4' 2>/dev/null |
    sed 's,/generations/.*,,' | sort -u | wc -l)
  echo "$n" >"$T/replicated"
  [ "$n" -eq "$N" ]
}
# (A scan of 3,000 replica directories: once a second, not every 50 ms.)
end=$(($(date +%s) + 400))
until replicated; do
  [ "$(date +%s)" -lt "$end" ] ||
    fail "only $(cat "$T/replicated") of $N databases replicated in 400 s"
  sleep 1
done
nfds=$(ls "/proc/$SLUICE_PID/fd" | wc -l)
[ "$nfds" -le "$NOFILE" ] || fail "$nfds fds open, limit $NOFILE"
echo "all $N replicated; $nfds fds open"

# One line, with the numbers.
grep -c "open file limit $NOFILE: $N databases do not all fit" "$T/sluice.log" >"$T/warn" || true
[ "$(cat "$T/warn")" -eq 1 ] || fail "expected one open-file-limit warning, got $(cat "$T/warn")"
grep "open file limit" "$T/sluice.log" | grep -Eq "\(([0-9]+) hot at once, ([0-9]+) light sleepers\)" ||
  fail "the warning does not give the bounds"

# Writes while they sleep (deep for most), just before the stop: every
# 10th gets a row.
python3 - "$T/dbs" "$N" <<'PY' || fail "cannot write to the sleeping databases"
import sqlite3, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(0, n, 10):
    c = sqlite3.connect(f"{d}/t{i:05d}.db", isolation_level=None)
    c.execute("INSERT INTO t(v) VALUES (?)", (f"tenant {i} written asleep",))
    c.close()
PY

t0=$(date +%s%N)
sluice_stop
echo "clean stop: $((($(date +%s%N) - t0) / 1000000)) ms"
# (A lapsed lease logs "changes not uploaded: the lease ... is not ours".)
if grep -qE 'level=ERROR|Too many open files|unable to open|not ours' "$T/sluice.log"; then
  grep -E 'level=ERROR|Too many open files|unable to open|not ours' "$T/sluice.log" | head -5 >&2
  fail "errors in the log"
fi
echo "WAL files left with frames after the stop: $(find "$T/dbs" -name '*-wal' -size +0 | wc -l)"

restore_dbs "restore" "$N" "$T/dbs" "$T/out" -config "$T/sluice.yml"
compare_dbs "restore" "$T/dbs" "$T/out" "$N" 5 --rep "$T/rep" \
  --rows '4 if i % 10 == 0 else 3' --gens 1
echo PASS
