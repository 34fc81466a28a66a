#!/usr/bin/env bash
# sluice config check: a good config passes and lists every database and
# replica; each kind of mistake fails with FILE:LINE: KEY; an unknown key
# is only a warning; a missing database only a warning; nothing is
# replicated or created; no secret is ever printed.
source "$SRCDIR/tests/lib/common.sh"

SECRETS="SeCrEt-AcCeSs-1 SeCrEtAzUrE2 SeCrEt-SaS-3 SeCrEt-PaSs-4 SeCrEt-EnV-5"
export SLUICE_TEST_SECRET=SeCrEt-EnV-5

# check NAME WANT_RC [ARGS...]: runs config check on $T/NAME.yml (unless
# ARGS name another), stdout in $T/NAME.out, stderr in $T/NAME.err.
check() {
  local name=$1 want=$2 rc=0
  shift 2
  [ $# -gt 0 ] || set -- -config "$T/$name.yml"
  "$SLUICE" config check "$@" >"$T/$name.out" 2>"$T/$name.err" || rc=$?
  for s in $SECRETS; do
    grep -q -- "$s" "$T/$name.out" "$T/$name.err" &&
      { cat "$T/$name.out" "$T/$name.err"; fail "$name: secret $s printed"; }
  done
  if [ "$rc" -ne "$want" ]; then
    cat "$T/$name.out" "$T/$name.err" >&2
    fail "$name: config check exited $rc, want $want"
  fi
  return 0
}

# expect NAME REGEX: a line of stdout matches.
expect() {
  grep -Eq -- "$2" "$T/$1.out" ||
    { cat "$T/$1.out" "$T/$1.err" >&2; fail "$1: no line matching /$2/"; }
}

# A good config: a WAL database, a rollback-journal one that replicate can
# convert, one not created yet, an unknown key, file replicas.
sqlite3 "$T/wal.db" 'PRAGMA journal_mode=wal; CREATE TABLE t(x);' >/dev/null
sqlite3 "$T/rollback.db" 'CREATE TABLE t(x);'
cat >"$T/good.yml" <<YML
addr: 127.0.0.1:9090
dbs:
  - path: $T/wal.db
    replicas:
      - url: file://$T/replica-wal
      - name: second
        path: $T/deeper/replica
  - path: $T/rollback.db
    colour: blue
    replicas:
      - url: file://$T/replica-rollback
  - path: $T/later.db
    replicas:
      - url: file://$T/replica-later
YML
check good 0
expect good "^config: $T/good.yml$"
expect good "^db: $T/wal.db$"
expect good "^  database: WAL mode, page size 4096$"
expect good "^  replica file: file file://$T/replica-wal$"
expect good "^  replica second: file file://$T/deeper/replica$"
expect good "rollback-journal mode.*switches it to WAL"
expect good "^warning: $T/good.yml:12: path: database $T/later.db does not exist yet"
expect good "^warning: $T/good.yml:9: colour: unknown key \"colour\" ignored: it had no effect$"
[ "$(tail -n1 "$T/good.out")" = "config ok (2 warnings; 1 key had no effect)" ] ||
  fail "good: last line is '$(tail -n1 "$T/good.out")'"
# Nothing was replicated, converted or created.
for p in "$T/.wal.db-litestream" "$T/rollback.db-wal" "$T/.rollback.db-litestream" \
  "$T/replica-wal" "$T/deeper" "$T/later.db"; do
  [ ! -e "$p" ] || fail "config check created $p"
done
sqlite3 "$T/rollback.db" 'PRAGMA journal_mode' | grep -qx delete ||
  fail "config check changed the journal mode"
echo "good config: ok"

# Keys that some guides put at the top level have no effect there: said so,
# and -strict turns every warning into an error.
cat >"$T/toplevel.yml" <<YML
retention: 24h
snapshot-interval: 1h
dbs:
  - path: $T/wal.db
    replicas:
      - url: file://$T/replica-wal
YML
check toplevel 0
expect toplevel "^warning: $T/toplevel.yml:1: retention: unknown key \"retention\" ignored: it had no effect here \(it is a replica setting: put it under each replica\)$"
expect toplevel "^warning: $T/toplevel.yml:2: snapshot-interval: .*no effect"
expect toplevel "^config ok \(2 warnings; 2 keys had no effect\)$"
check toplevel 1 -strict -config "$T/toplevel.yml"
expect toplevel "^error: $T/toplevel.yml:1: retention: "
expect toplevel "^2 problems$"
check good 1 -strict -config "$T/good.yml"
expect good "^error: .*later.db does not exist yet"
echo "top-level keys, -strict: ok"

# The same through $SLUICE_CONFIG, and through -no-expand-env.
SLUICE_CONFIG=$T/good.yml check env 0 -no-expand-env
expect env "^config: $T/good.yml$"
# shellcheck disable=SC2016 # the config names the variable, unexpanded
printf 'dbs:\n  - path: ${SLUICE_TEST_DIR}/wal.db\n    replicas:\n      - url: file://%s/r\n' \
  "$T" >"$T/expand.yml"
SLUICE_TEST_DIR=$T check expand 0
expect expand "^db: $T/wal.db$"
SLUICE_TEST_DIR=$T check noexpand 0 -config "$T/expand.yml" -no-expand-env
expect noexpand '^db: .*\$\{SLUICE_TEST_DIR\}/wal.db$'

# write_bad NAME: stdin becomes $T/NAME.yml.
write_bad() { cat >"$T/$1.yml"; }
# bad NAME LINE KEY: check fails naming file, line and key.
bad() {
  check "$1" 1
  expect "$1" "^error: $T/$1.yml:$2: $3: "
  [ "$(tail -n1 "$T/$1.out")" = "1 problem" ] ||
    fail "$1: last line is '$(tail -n1 "$T/$1.out")'"
}

write_bad yaml <<YML
dbs:
  - path: $T/wal.db
    replicas: [
YML
check yaml 1
expect yaml "^error: $T/yaml.yml:[34]: .*YAML"

write_bad type <<YML
dbs:
  - path: $T/wal.db
    monitor-interval: [1s]
    replicas:
      - url: file://$T/r
YML
bad type 3 monitor-interval

write_bad duration <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - url: file://$T/r
        sync-interval: soon
YML
bad duration 5 sync-interval

write_bad url <<YML
access-key-id: AKIAEXAMPLE
secret-access-key: SeCrEt-AcCeSs-1
dbs:
  - path: $T/wal.db
    replicas:
      - url: "sftp://user:SeCrEt-PaSs-4@host:port/x"
YML
bad url 6 url

write_bad rtype <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - type: ftp
        path: /x
YML
bad rtype 4 type

write_bad rscheme <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - url: ftp://host/x
YML
bad rscheme 4 url

write_bad bucket <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - type: s3
        path: backups/app
        secret-access-key: \$SLUICE_TEST_SECRET
YML
bad bucket 4 bucket

write_bad container <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - url: "abs://acct@/x?sv=2021&sig=SeCrEt-SaS-3"
        account-key: SeCrEtAzUrE2
YML
bad container 4 url

# Endpoints: a port out of range, a broken IPv6 host, another scheme (its
# userinfo must not be echoed), each at the endpoint's own line.
for ep in "http://localhost:99999999" "http://[zz" "ftp://SeCrEt-PaSs-4@x" \
  "http://h:0"; do
  write_bad endpoint <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - type: s3
        bucket: b
        endpoint: "$ep"
YML
  bad endpoint 6 endpoint
  expect endpoint "invalid endpoint"
done
expect endpoint "out of range"

write_bad port <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - url: "sftp://u@host:99999999/x"
YML
bad port 4 url
expect port "port 99999999 out of range"

# file://relative/x is /relative/x to Go: refused, saying what to write.
write_bad relfile <<YML
dbs:
  - path: $T/wal.db
    replicas:
      - url: file://relative/x
YML
bad relfile 4 url
expect relfile "file:///relative/x"
echo "endpoint, port and file URL problems: ok"

# Problems found on disk, reported with the entry's line.
touch "$T/plainfile"
echo "not sqlite, not at all, this is text long enough to fill a header" \
  "and then some more text to be sure it is more than one hundred bytes" \
  >"$T/text.db"
cat >"$T/disk.yml" <<YML
dbs:
  - path: $T/plainfile/app.db
    replicas:
      - url: file://$T/r1
  - path: $T/text.db
    replicas:
      - url: file://$T/r2
  - path: $T/wal.db
    replicas:
      - url: file://$T/plainfile/replica
YML
check disk 1
expect disk "^error: $T/disk.yml:2: path: database directory $T/plainfile: .*not a directory"
expect disk "^error: $T/disk.yml:5: path: $T/text.db is not a SQLite database"
expect disk "^error: $T/disk.yml:10: url: file replica $T/plainfile/replica: .*not a directory"
[ "$(tail -n1 "$T/disk.out")" = "3 problems" ] ||
  fail "disk: last line is '$(tail -n1 "$T/disk.out")'"
echo "disk problems: ok"

# Cloud replicas with credentials from the file and the environment: the
# output names them without a secret.  A backend not merged into this
# build yet is reported as such.
cat >"$T/cloud.yml" <<YML
access-key-id: AKIAEXAMPLE
secret-access-key: \${SLUICE_TEST_SECRET}
dbs:
  - path: $T/wal.db
    replicas:
      - url: s3://my-bucket/app
        secret-access-key: SeCrEt-AcCeSs-1
        access-key-id: AKIAEXAMPLE
      - name: azure
        url: "abs://acct@container/app?sv=2021&sig=SeCrEt-SaS-3"
        account-key: SeCrEtAzUrE2
      - name: minio
        type: s3
        bucket: b2
        endpoint: "http://user:SeCrEt-PaSs-4@minio:9000"
        region: us-east-1
YML
rc=0
"$SLUICE" config check -config "$T/cloud.yml" >"$T/cloud.out" 2>&1 || rc=$?
for s in $SECRETS; do
  grep -q -- "$s" "$T/cloud.out" && { cat "$T/cloud.out"; fail "cloud: secret $s printed"; }
done
expect cloud "^  replica s3: s3 s3://my-bucket/app$"
expect cloud "^  replica azure: abs "
expect cloud "^  replica minio: s3 .* endpoint=http://xxxxx@minio:9000 region=us-east-1$"
if grep -q "backend not available yet" "$T/cloud.out"; then
  echo "cloud: $(grep -c 'not available yet' "$T/cloud.out") backend(s) not in this build yet"
else
  [ "$rc" -eq 0 ] || { cat "$T/cloud.out"; fail "cloud config rejected"; }
fi

# No databases at all is a problem.
printf 'addr: ":9090"\n' >"$T/empty.yml"
check empty 1
expect empty "no databases specified"

# Command line.
rc=0
"$SLUICE" config >"$T/usage.out" 2>&1 || rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "check" "$T/usage.out"; then
  fail "config without a subcommand"
fi
rc=0
"$SLUICE" config check -h >"$T/usage.out" 2>&1 || rc=$?
grep -q -- "-no-expand-env" "$T/usage.out" || fail "config check -h"
rc=0
"$SLUICE" config frobnicate >"$T/usage.out" 2>&1 || rc=$?
if [ "$rc" -ne 1 ] || ! grep -q "unknown subcommand" "$T/usage.out"; then
  fail "unknown subcommand accepted"
fi
rc=0
"$SLUICE" config check -config "$T/good.yml" extra >"$T/usage.out" 2>&1 || rc=$?
[ "$rc" -eq 1 ] || fail "extra argument accepted"
check missing 1 -config "$T/nope.yml"
expect missing "config file not found: $T/nope.yml"
echo PASS
