#!/usr/bin/env bash
# age encryption (spec 1.2), end to end, against the reference `age` CLI:
#  1. file replica: a writer commits while sluice replicates with an age
#     section (a 20 MiB random table makes the snapshot span hundreds of
#     age chunks and the restore fetch it in ranges); validation passes on
#     the encrypted replica; every object is an age file that
#     `age -d -i key.txt` opens and `lz4 -d` turns into a valid snapshot or
#     WAL segment; restore gives the same rows, integrity_check ok, one
#     generation; the listing commands work.
#  2. the other way: the same objects re-made with `lz4 | age -r A -r B`
#     restore with sluice (identity B only, then [stranger, A]).
#  3. a wrong identity fails naming the object and saying the key does not
#     match; a bare-URL restore says no identity is configured.
#  4. S3: s3rver (objects read back with the AWS CLI and opened with age)
#     and, when moto runs, sluice's own restore from S3.
#  5. no identity or secret key ever appears in a log, an error or
#     `config check` (which says the replica is encrypted).
. "$(dirname "$0")/../lib/common.sh"
command -v age >/dev/null && command -v age-keygen >/dev/null ||
  fail "the age CLI is missing (scripts/install-deps.sh --test installs it)"
command -v lz4 >/dev/null || fail "lz4 CLI missing"

age-keygen -o "$T/a.txt" 2>/dev/null
age-keygen -o "$T/b.txt" 2>/dev/null
age-keygen -o "$T/c.txt" 2>/dev/null
pub() { age-keygen -y "$1"; }
sec() { grep '^AGE-SECRET-KEY-1' "$1"; }
A_PUB=$(pub "$T/a.txt"); B_PUB=$(pub "$T/b.txt")
A_SEC=$(sec "$T/a.txt"); B_SEC=$(sec "$T/b.txt"); C_SEC=$(sec "$T/c.txt")

config() { # file url identities... : recipients are always [A]
  local f=$1 url=$2; shift 2
  local ids
  ids=$(printf '%s, ' "$@"); ids=${ids%, }
  cat >"$f" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - url: $url
        sync-interval: 100ms
        validation-interval: 1s
        age:
          recipients: [$A_PUB]
          identities: [$ids]
YML
}

gens() { find "$1/generations" -mindepth 1 -maxdepth 1 -type d | wc -l; }

# Every object of a replica directory: an age file that the CLI opens with
# key $2 into a valid LZ4 frame, holding a SQLite database (snapshot) or
# WAL bytes (segment at offset 0: the WAL header).
check_objects() { # replica-dir key-file
  local n=0 f
  while read -r f; do
    head -c 22 "$f" | grep -q '^age-encryption.org/v1$' || fail "$f is not an age file"
    age -d -i "$2" "$f" >"$T/obj.lz4" || fail "age -d cannot open $f"
    [ "$(head -c 4 "$T/obj.lz4" | od -An -tx1 | tr -d ' ')" = 04224d18 ] ||
      fail "$f: the age payload is not an LZ4 frame"
    lz4 -d -c "$T/obj.lz4" >"$T/obj" 2>/dev/null || fail "$f: lz4 -d failed"
    case $f in
    *.snapshot.lz4)
      head -c 16 "$T/obj" | grep -q "SQLite format 3" || fail "$f: not a database"
      cp "$T/obj" "$T/snap.db"
      [ "$(sqlite3 "$T/snap.db" 'PRAGMA integrity_check')" = ok ] ||
        fail "$f: the snapshot fails integrity_check" ;;
    *_00000000.wal.lz4)
      case $(head -c 4 "$T/obj" | od -An -tx1 | tr -d ' ') in
      377f0682 | 377f0683) ;;
      *) fail "$f: no WAL header" ;;
      esac ;;
    esac
    n=$((n + 1))
  done < <(find "$1" -name '*.lz4' | sort)
  echo "$n"
}

# --- 1. file replica ---
sqlite3 "$T/app.db" 'PRAGMA journal_mode=wal;
  CREATE TABLE big(b);
  INSERT INTO big WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<20)
    SELECT randomblob(1048576) FROM c;' >/dev/null
"$SQLWRITER" -db "$T/app.db" -n 50 >/dev/null
config "$T/sluice.yml" "file://$T/replica" "$A_SEC"
sluice_start -config "$T/sluice.yml"
wait_until 30 sh -c "ls $T/replica/generations/*/snapshots/*.lz4" || fail "no snapshot"
"$SQLWRITER" -db "$T/app.db" -duration 4 -rate 800 -update-every 5 -delete-every 9 \
  >"$T/writer.out" || fail "writer failed"
wait_until 30 grep -q "validation ok" "$T/sluice.log" ||
  fail "no validation passed on the encrypted replica"
sluice_stop
grep -q "replicating to .*(age-encrypted)" "$T/sluice.log" || fail "start-up line lacks age"
grep -q "validation mismatch\|level=ERROR" "$T/sluice.log" && fail "errors while replicating"
nobj=$(check_objects "$T/replica" "$T/a.txt") || exit 1
nseg=$(find "$T/replica" -name '*.wal.lz4' | wc -l)
[ "$nseg" -ge 2 ] || fail "expected several WAL segments, got $nseg"
[ "$(gens "$T/replica")" = 1 ] || fail "expected one generation"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
for c in generations snapshots wal; do
  "$SLUICE" "$c" -config "$T/sluice.yml" "$T/app.db" >"$T/$c.out" 2>&1 ||
    { cat "$T/$c.out"; fail "$c on an encrypted replica"; }
done
[ "$(grep -c . "$T/wal.out")" -gt "$nseg" ] || fail "wal lists too few segments"
grep -q "[0-9a-f]\{16\}" "$T/snapshots.out" || fail "snapshots lists nothing"
echo "file: $(cat "$T/writer.out"); $nobj objects all opened by age -d, $(grep -c 'validation ok' "$T/sluice.log") validations ok, restore equal"

# Restarts: with the identity, sluice reads its last (encrypted) segment
# and resumes; with recipients only it cannot, says so, uploads that
# segment again and skips validation; one generation throughout.  (Each
# restart follows a write made while sluice was stopped: an unchanged
# database would start asleep, with no resume to test.)
: >"$T/sluice.log"
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 20 grep -q "resuming replication" "$T/sluice.log" || fail "no resume"
"$SQLWRITER" -db "$T/app.db" -n 200 >/dev/null
sluice_stop
grep -q "unreadable" "$T/sluice.log" && fail "resume could not read its own segment"
sed -e "s|identities: .*|identities: []|" "$T/sluice.yml" >"$T/write-only.yml"
: >"$T/sluice.log"
"$SQLWRITER" -db "$T/app.db" -n 10 >/dev/null
sluice_start -config "$T/write-only.yml"
wait_until 20 grep -q "resuming replication" "$T/sluice.log" || fail "no resume (write-only)"
"$SQLWRITER" -db "$T/app.db" -n 200 >/dev/null
sluice_stop
grep -q "last segment .*lz4 is unreadable (object is age-encrypted and no age identity is configured" \
  "$T/sluice.log" || fail "write-only: no word about the unreadable last segment"
grep -q "validation-interval ignored: the replica is age-encrypted" "$T/sluice.log" ||
  fail "write-only: validation not skipped"
cp "$T/sluice.log" "$T/restarts.log"
[ "$(gens "$T/replica")" = 1 ] || fail "restarts: expected one generation"
rm -f "$T/restored.db"
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/restored.db" "$T/app.db" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore after restarts failed"; }
assert_same_db "$T/app.db" "$T/restored.db"
nobj=$(check_objects "$T/replica" "$T/a.txt") || exit 1
echo "restarts (with identity, then recipients only): one generation, $nobj objects, restore equal"

# --- 2. objects made by lz4 | age -r restore with sluice ---
R2=$T/replica-cli
while read -r f; do
  out=$R2/${f#"$T/replica/"}
  mkdir -p "$(dirname "$out")"
  age -d -i "$T/a.txt" "$f" | lz4 -d -c | lz4 -c | age -r "$A_PUB" -r "$B_PUB" >"$out"
done < <(find "$T/replica" -name '*.lz4')
cmp -s "$(find "$T/replica" -name '*.snapshot.lz4')" "$(find "$R2" -name '*.snapshot.lz4')" &&
  fail "re-made objects are identical: not made by the CLI"
config "$T/cli.yml" "file://$R2" "$B_SEC"
"$SLUICE" restore -config "$T/cli.yml" -o "$T/cli.db" "$T/app.db" >"$T/cli.log" 2>&1 ||
  { cat "$T/cli.log"; fail "restore of lz4 | age -r objects failed"; }
assert_same_db "$T/app.db" "$T/cli.db"
config "$T/cli2.yml" "file://$R2" "$C_SEC" "$A_SEC"
"$SLUICE" restore -config "$T/cli2.yml" -o "$T/cli2.db" "$T/app.db" >"$T/cli2.log" 2>&1 ||
  { cat "$T/cli2.log"; fail "restore with a second identity failed"; }
assert_same_db "$T/app.db" "$T/cli2.db"
echo "age CLI -> sluice: restore equal (identity B alone; [stranger, A])"

# --- 3. a wrong identity, no identity ---
config "$T/wrong.yml" "file://$T/replica" "$C_SEC"
"$SLUICE" restore -config "$T/wrong.yml" -o "$T/wrong.db" "$T/app.db" >"$T/wrong.log" 2>&1 &&
  fail "restore with a wrong identity succeeded"
grep -q "generations/[0-9a-f]\{16\}/[a-z]*/[0-9a-f_]*\.[a-z]*\.lz4: the age identity does not match" \
  "$T/wrong.log" || { cat "$T/wrong.log"; fail "wrong identity: message"; }
[ ! -e "$T/wrong.db" ] || fail "wrong identity left a database"
"$SLUICE" restore -o "$T/url.db" "file://$T/replica" >"$T/url.log" 2>&1 &&
  fail "restore from a bare URL succeeded"
grep -q "\.lz4: object is age-encrypted and no age identity is configured" "$T/url.log" ||
  { cat "$T/url.log"; fail "URL restore: message"; }
echo "wrong identity: $(grep -o 'generations.*does not match' "$T/wrong.log" | head -1)"

# config check: encrypted, keys not shown.
"$SLUICE" config check -config "$T/sluice.yml" >"$T/check.out" 2>&1 ||
  { cat "$T/check.out"; fail "config check"; }
grep -q "age: encrypted for 1 recipient, 1 identity" "$T/check.out" ||
  { cat "$T/check.out"; fail "config check does not say the replica is encrypted"; }
sed -i "s|identities: .*|identities: []|" "$T/wrong.yml"
"$SLUICE" config check -config "$T/wrong.yml" >"$T/check2.out" 2>&1
grep -q "warning: .*recipients but no identities" "$T/check2.out" ||
  { cat "$T/check2.out"; fail "config check: no warning without identities"; }

# --- 4. S3 ---
need_servers
export AWS_EC2_METADATA_DISABLED=true AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export AWS_CONFIG_FILE=/nonexistent
awscli() { # endpoint args...
  local ep=$1; shift
  AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER AWS_DEFAULT_REGION=us-east-1 \
    /usr/bin/aws --endpoint-url "$ep" "$@"
}
s3config() { # file endpoint bucket prefix
  config "$1" "s3://$3/$4" "$A_SEC"
  sed -i "s|sync-interval: 100ms|sync-interval: 100ms\n        endpoint: $2\n        force-path-style: true\n        access-key-id: S3RVER\n        secret-access-key: S3RVER|" "$1"
}
s3run() { # dir endpoint bucket prefix
  rm -f "$1/app.db"*
  mkdir -p "$1"
  "$SQLWRITER" -db "$1/app.db" -n 20 -size 3000 >/dev/null
  s3config "$1/sluice.yml" "$2" "$3" "$4"
  sed -i "s|path: $T/app.db|path: $1/app.db|" "$1/sluice.yml"
  sluice_start -config "$1/sluice.yml"
  wait_until 30 sh -c "python3 '$SRCDIR/tests/tools/s3_list.py' --keys $2 $3 $4/ | grep -q snapshot.lz4" ||
    fail "$4: no snapshot in S3"
  "$SQLWRITER" -db "$1/app.db" -duration 2 -rate 500 -update-every 3 >"$1/writer.out" ||
    fail "writer failed"
  sluice_stop
}
PREFIX=age-$$-$RANDOM
D=$T/s3rver
s3run "$D" http://127.0.0.1:4568 testbucket "$PREFIX"
awscli http://127.0.0.1:4568 s3 cp --recursive --quiet "s3://testbucket/$PREFIX/" "$D/copy/" ||
  fail "aws s3 cp"
n=$(check_objects "$D/copy" "$T/a.txt") || exit 1
config "$D/copy.yml" "file://$D/copy" "$A_SEC"
sed -i "s|path: $T/app.db|path: $D/app.db|" "$D/copy.yml"
"$SLUICE" restore -config "$D/copy.yml" -o "$D/restored.db" "$D/app.db" >"$D/restore.log" 2>&1 ||
  { cat "$D/restore.log"; fail "restore of the objects copied out of S3"; }
assert_same_db "$D/app.db" "$D/restored.db"
[ "$(gens "$D/copy")" = 1 ] || fail "s3rver: expected one generation"
echo "s3rver: $(cat "$D/writer.out"); $n objects read back with the AWS CLI, opened by age -d; restore equal"

MOTO=http://127.0.0.1:5000
if curl -s -o /dev/null --max-time 1 "$MOTO/moto-api/"; then
  B=sluice-age-$$-$RANDOM
  s3_mb "$MOTO" "$B" || fail "create moto bucket"
  D=$T/moto
  s3run "$D" "$MOTO" "$B" app
  "$SLUICE" restore -config "$D/sluice.yml" -o "$D/restored.db" "$D/app.db" >"$D/restore.log" 2>&1 ||
    { cat "$D/restore.log"; fail "restore from S3 (moto)"; }
  assert_same_db "$D/app.db" "$D/restored.db"
  ng=$(s3_list --keys "$MOTO" "$B" app/ | grep -Eo "generations/[0-9a-f]{16}/" | sort -u | wc -l)
  [ "$ng" = 1 ] || fail "moto: expected one generation, got $ng"
  "$SLUICE" generations -config "$D/sluice.yml" "$D/app.db" >"$D/gens" 2>&1 ||
    fail "generations on encrypted S3"
  echo "moto: $(cat "$D/writer.out"); restored by sluice from S3, one generation"
else
  echo "moto not running: sluice's own S3 restore not tried"
fi

# --- 5. no key anywhere ---
for k in "$A_SEC" "$B_SEC" "$C_SEC" "${A_SEC#AGE-SECRET-KEY-1}" "${A_PUB#age1}"; do
  if grep -rqiF -- "${k:0:40}" "$T"/*.log "$T"/*.out "$T"/*/*.log 2>/dev/null; then
    grep -rliF -- "${k:0:40}" "$T"/*.log "$T"/*.out "$T"/*/*.log
    fail "a key appears in a log or output"
  fi
done
echo PASS
