#!/usr/bin/env bash
# Replication to a real OpenSSH server on 127.0.0.1 (its own host key,
# config and port).  One database, two sftp replicas: key auth through an
# sftp:// URL with a known_hosts file as host-key-path, and password auth
# through the host/user/password/path keys with the server's public key
# file as host-key-path.  A writer commits while sluice replicates; after a
# graceful stop both replicas restore to the source (rows, integrity_check),
# the listing commands read the server, the objects are where Litestream
# puts them and no temporary file is left.  A second generation is counted.
# Then the refusals: unknown host key, changed host key, wrong password,
# each one clear line naming the host, and the password never printed.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/lib/sshd.sh"
SSHD_PASSWORD_AUTH=yes
SSHD_ECDSA=1 # the server offers ECDSA (libssh2's favourite) and Ed25519
sshd_start
trap 'sshd_stop; cleanup' EXIT
chmod 755 "$T"
H=127.0.0.1:$SSHD_PORT
KR=$T/remote-key
mkdir -p "$KR"

# The key replica trusts a hashed known_hosts (ssh-keygen -H) holding only
# the server's Ed25519 key.
cp "$SSHD_KNOWN_HOSTS" "$T/hashed_hosts"
ssh-keygen -q -H -f "$T/hashed_hosts" 2>/dev/null
grep -q '^|1|' "$T/hashed_hosts" || fail "ssh-keygen -H did not hash"

pw_ok=0
if sshd_password_user "$T/remote-pw"; then pw_ok=1; fi

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: key
        url: sftp://root@$H$KR/app
        key-path: $SSHD_KEY
        host-key-path: $T/hashed_hosts
        sync-interval: 100ms
        snapshot-wal-factor: 0 # snapshots by time only here
YML
if [ $pw_ok = 1 ]; then
  cat >>"$T/sluice.yml" <<YML
      - name: pw
        type: sftp
        host: $H
        user: $SSHD_PASSWORD_USER
        password: $SSHD_PASSWORD
        path: $T/remote-pw/app
        host-key-path: $SSHD_DIR/host_key.pub
        sync-interval: 100ms
        snapshot-wal-factor: 0 # snapshots by time only here
YML
else
  echo "password case skipped: cannot create the test user (needs root)"
fi
nrep=$((1 + pw_ok))

"$SLUICE" config check -config "$T/sluice.yml" >"$T/check.txt" 2>&1 ||
  { cat "$T/check.txt"; fail "config check failed"; }
grep -q "replica key: sftp sftp://root@$H$KR/app" "$T/check.txt" ||
  { cat "$T/check.txt"; fail "config check does not show the sftp location"; }
grep -qF -- "$SSHD_PASSWORD" "$T/check.txt" && fail "config check prints the password"

"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
gens_up() {
  [ "$("$SLUICE" generations -config "$T/sluice.yml" "$T/app.db" |
    grep -cE '^(key|pw) ')" = "$nrep" ]
}
wait_until 20 gens_up || fail "no generation uploaded to every replica"
"$SQLWRITER" -db "$T/app.db" -duration 3 -rate 2000 -update-every 7 \
  -delete-every 11 >"$T/writer.out" || fail "writer failed"
sluice_stop
grep -q 'level=ERROR' "$T/sluice.log" && fail "errors while replicating"
grep -qF -- "$SSHD_PASSWORD" "$T/sluice.log" && fail "the password is in the log"

# Listings through the config, read from the server.
"$SLUICE" snapshots -config "$T/sluice.yml" "$T/app.db" >"$T/snaps.txt" ||
  fail "snapshots failed"
# At least one snapshot each (more when the WAL shipped passed the size
# that triggers a new one, snapshot-wal-factor).
[ "$(grep -E '^(key|pw) ' "$T/snaps.txt" | awk '{print $1}' | sort -u | wc -l)" = "$nrep" ] ||
  { cat "$T/snaps.txt"; fail "expected a snapshot on every replica"; }
"$SLUICE" wal -config "$T/sluice.yml" "$T/app.db" >"$T/wal.txt" || fail "wal failed"
[ "$(grep -c '^key ' "$T/wal.txt")" -ge 2 ] || { cat "$T/wal.txt"; fail "few WAL segments"; }
# Litestream's layout, nothing temporary left behind.
find "$KR/app" -type f | grep -Eq "^$KR/app/generations/[0-9a-f]{16}/wal/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$" ||
  fail "no WAL segment under $KR/app/generations/"
find "$KR/app" -type f | grep -Eq "^$KR/app/generations/[0-9a-f]{16}/snapshots/[0-9a-f]{8}\.snapshot\.lz4$" ||
  fail "no snapshot under $KR/app/generations/"
[ -z "$(find "$KR" -name '*.tmp')" ] || fail "temporary files left: $(find "$KR" -name '*.tmp')"
# The segments are LZ4 frames that lz4 itself reads.
if command -v lz4 >/dev/null; then
  f=$(find "$KR/app" -name '*.wal.lz4' | head -1)
  lz4 -dc "$f" >/dev/null || fail "lz4 cannot read $f"
fi

for r in key pw; do
  [ $r = pw ] && [ $pw_ok = 0 ] && continue
  "$SLUICE" restore -config "$T/sluice.yml" -replica $r -o "$T/$r.db" "$T/app.db" \
    >"$T/restore-$r.log" 2>&1 || { cat "$T/restore-$r.log"; fail "restore from $r failed"; }
  assert_same_db "$T/app.db" "$T/$r.db"
done
[ $pw_ok = 1 ] && [ "$(stat -c %U "$T/remote-pw/app/generations")" = "$SSHD_PASSWORD_USER" ] &&
  echo "password replica written as $SSHD_PASSWORD_USER"

# An object written again under the same name (a snapshot retaken at the
# same index) replaces the old one: OpenSSH will not rename over a file,
# so the backend removes it first.
OBJ=$BUILDDIR/core_sftpobj
head -c 300000 /dev/urandom >"$T/o1"
head -c 200000 /dev/urandom >"$T/o2"
"$OBJ" "sftp://root@$H$KR/obj" "$SSHD_KEY" "$SSHD_KNOWN_HOSTS" put x/o "$T/o1" >/dev/null ||
  fail "core_sftpobj put failed"
"$OBJ" "sftp://root@$H$KR/obj" "$SSHD_KEY" "$SSHD_KNOWN_HOSTS" put x/o "$T/o2" >/dev/null ||
  fail "a put over an existing object failed"
cmp -s "$T/o2" "$KR/obj/x/o" || fail "the second put did not replace the object"
"$OBJ" "sftp://root@$H$KR/obj" "$SSHD_KEY" "$SSHD_KNOWN_HOSTS" get x/o "$T/o3" >/dev/null ||
  fail "core_sftpobj get failed"
cmp -s "$T/o2" "$T/o3" || fail "get returned other bytes"
[ -z "$(find "$KR/obj" -name '*.tmp')" ] || fail "overwrite left a temporary file"

# A second generation (the meta directory is gone): two listed, the
# restore takes the newer one and holds every row.
rm -rf "$T/.app.db-litestream"
sluice_start -config "$T/sluice.yml"
two_gens() {
  [ "$("$SLUICE" generations -config "$T/sluice.yml" -replica key "$T/app.db" |
    grep -c '^key ')" = 2 ]
}
wait_until 20 two_gens || fail "no second generation"
"$SQLWRITER" -db "$T/app.db" -n 500 >/dev/null
sluice_stop
[ "$(find "$KR/app/generations" -mindepth 1 -maxdepth 1 -type d | wc -l)" = 2 ] ||
  fail "expected 2 generation directories on the server"
"$SLUICE" restore -config "$T/sluice.yml" -replica key -o "$T/gen2.db" "$T/app.db" \
  >"$T/restore-gen2.log" 2>&1 || { cat "$T/restore-gen2.log"; fail "restore of generation 2 failed"; }
assert_same_db "$T/app.db" "$T/gen2.db"

# A bare URL with the default known_hosts ($HOME/.ssh/known_hosts).
mkdir -p "$T/home/.ssh"
cp "$SSHD_KNOWN_HOSTS" "$T/home/.ssh/known_hosts"
HOME=$T/home "$SLUICE" generations "sftp://root@$H$KR/app" >"$T/url-gens.txt" 2>&1 &&
  fail "a URL without key-path or password was accepted"
grep -q "needs a password or a key-path" "$T/url-gens.txt" ||
  { cat "$T/url-gens.txt"; fail "no clear error without credentials"; }
if [ $pw_ok = 1 ]; then
  HOME=$T/home "$SLUICE" restore -o "$T/url.db" \
    "sftp://$SSHD_PASSWORD_USER:$SSHD_PASSWORD@$H$T/remote-pw/app" >"$T/url.log" 2>&1 ||
    { cat "$T/url.log"; fail "restore from a bare sftp URL (password in it) failed"; }
  grep -qF -- "$SSHD_PASSWORD" "$T/url.log" && fail "the password from the URL is in the log"
  [ "$(rows "$T/url.db")" -gt 0 ] || fail "restore from the URL holds no rows"
  sqlite3 "$T/url.db" 'PRAGMA integrity_check' | grep -qx ok || fail "URL restore: integrity_check"
fi

fp=$(ssh-keygen -lf "$SSHD_DIR/host_key.pub" | awk '{print $2}')
# Unknown host key: no known_hosts at all.
mkdir -p "$T/nohome"
cat >"$T/unknown.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: sftp://root@$H$KR/app
        key-path: $SSHD_KEY
YML
out=$(HOME=$T/nohome "$SLUICE" restore -config "$T/unknown.yml" -o "$T/u.db" "$T/app.db" 2>&1) &&
  fail "restore from a host with an unknown key succeeded"
fp2=$(ssh-keygen -lf "$SSHD_DIR/host_key_ecdsa.pub" | awk '{print $2}')
echo "$out" | grep -Fq -e "host key of 127.0.0.1:$SSHD_PORT is unknown: ssh-ed25519 $fp is not in $T/nohome/.ssh/known_hosts" \
  -e "host key of 127.0.0.1:$SSHD_PORT is unknown: ecdsa-sha2-nistp256 $fp2 is not in $T/nohome/.ssh/known_hosts" ||
  { echo "$out"; fail "unknown host key: no clear error"; }
echo "unknown key: $(echo "$out" | grep -m1 'is unknown' | cut -c1-240)"

# Changed host key: known_hosts holds another key for [127.0.0.1]:PORT.
ssh-keygen -q -t ed25519 -N '' -f "$T/other_key"
printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(cut -d' ' -f1,2 "$T/other_key.pub")" >"$T/changed_hosts"
for hk in "$T/changed_hosts" "$T/other_key.pub"; do
  sed "s|key-path: $SSHD_KEY|key-path: $SSHD_KEY\n        host-key-path: $hk|" \
    "$T/unknown.yml" >"$T/changed.yml"
  out=$("$SLUICE" restore -config "$T/changed.yml" -o "$T/c.db" "$T/app.db" 2>&1) &&
    fail "restore from a host whose key changed succeeded ($hk)"
  echo "$out" | grep -Fq "host key of 127.0.0.1:$SSHD_PORT has CHANGED: the server sent ssh-ed25519 $fp" ||
    { echo "$out"; fail "changed host key: no clear error ($hk)"; }
done
echo "changed key: $(echo "$out" | grep -m1 'CHANGED' | cut -c1-240)"

# The replicate daemon refuses such a replica with the same line.
: >"$T/sluice.log"
sluice_start -config "$T/changed.yml"
wait_until 15 grep -q "has CHANGED" "$T/sluice.log" || fail "replicate: no host key error"
sluice_stop

# A wrong password: refused at once, the password not shown.
if [ $pw_ok = 1 ]; then
  bad=Wrong-Pw-$RANDOM
  start=$(date +%s%N)
  out=$(HOME=$T/home "$SLUICE" generations \
    "sftp://$SSHD_PASSWORD_USER:$bad@$H$T/remote-pw/app" 2>&1) &&
    fail "a wrong password was accepted"
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "$out" | grep -q "authentication as $SSHD_PASSWORD_USER on $H failed: password refused" ||
    { echo "$out"; fail "wrong password: no clear error"; }
  echo "$out" | grep -qF -- "$bad" && fail "the wrong password is in the message"
  # sshd delays a failed password by design; no retries on top of that.
  [ "$ms" -lt 15000 ] || fail "wrong password took ${ms}ms (retried?)"
  echo "wrong password (${ms}ms): $(echo "$out" | grep -m1 'refused' | cut -c1-200)"
fi
echo "PASS: $(cat "$T/writer.out"), $(rows "$T/key.db") rows, $nrep replicas"
