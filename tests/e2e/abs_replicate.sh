#!/usr/bin/env bash
# Replication to Azure Blob Storage (Azurite).  One database, two abs
# replicas: one from config keys (account-name, account-key, bucket, path,
# endpoint), one from an abs://ACCOUNT@CONTAINER/PATH URL whose key comes from
# $LITESTREAM_AZURE_ACCOUNT_KEY.  A writer commits while sluice replicates;
# after a graceful stop both replicas restore to the source, through the
# config and through the bare URL (endpoint and key from
# $AZURE_STORAGE_CONNECTION_STRING, and the abs://ACCOUNT/CONTAINER/PATH
# form); the listing commands read Azure; a wrong key fails fast with one
# clear error.
source "$SRCDIR/tests/lib/common.sh"
source "$SRCDIR/tests/tools/azurite.sh"
[ "$AZ_PORT" = 10000 ] && need_servers
az_up || skip "Azurite not reachable on 127.0.0.1:$AZ_PORT"

C=sluice-e2e-$$-$RANDOM
[ "$(az_container_create "$C")" = 201 ] || fail "cannot create container $C"
trap 'az_container_delete "$C" >/dev/null; cleanup' EXIT

cat >"$T/sluice.yml" <<YML
dbs:
  - path: $T/app.db
    replicas:
      - name: keys
        type: abs
        account-name: $AZ_ACCOUNT
        account-key: $AZ_KEY
        bucket: $C
        path: cfg/app
        endpoint: $AZ_ENDPOINT
        sync-interval: 100ms
      - name: url
        url: abs://$AZ_ACCOUNT@$C/url/app
        endpoint: $AZ_ENDPOINT
        sync-interval: 100ms
YML
export LITESTREAM_AZURE_ACCOUNT_KEY=$AZ_KEY
"$SQLWRITER" -db "$T/app.db" -n 1 >/dev/null
sluice_start -config "$T/sluice.yml"
wait_until 10 sh -c "\"$SLUICE\" generations -config \"$T/sluice.yml\" \"$T/app.db\" | grep -q '^url '" ||
  fail "no generation uploaded"
"$SQLWRITER" -db "$T/app.db" -duration 3 -rate 2000 -update-every 7 \
  -delete-every 11 >"$T/writer.out" || fail "writer failed"
sluice_stop
grep -q 'level=ERROR' "$T/sluice.log" && fail "errors while replicating"

# Listings through the config.
"$SLUICE" generations -config "$T/sluice.yml" "$T/app.db" >"$T/gens.txt" ||
  fail "generations failed"
[ "$(grep -c '^keys \|^url ' "$T/gens.txt")" = 2 ] ||
  { cat "$T/gens.txt"; fail "expected one generation per replica"; }
"$SLUICE" snapshots -config "$T/sluice.yml" "$T/app.db" >"$T/snaps.txt" ||
  fail "snapshots failed"
grep -q '^keys ' "$T/snaps.txt" || { cat "$T/snaps.txt"; fail "no snapshot listed"; }
"$SLUICE" wal -config "$T/sluice.yml" "$T/app.db" >"$T/wal.txt" || fail "wal failed"
[ "$(grep -c '^url ' "$T/wal.txt")" -ge 2 ] || { cat "$T/wal.txt"; fail "few WAL segments"; }
# The objects are where Litestream puts them.
az_list "$C" cfg/app/generations/ | grep -Eq '^cfg/app/generations/[0-9a-f]{16}/wal/[0-9a-f]{8}_[0-9a-f]{8}\.wal\.lz4$' ||
  fail "no WAL segment under cfg/app/generations/"

for r in keys url; do
  "$SLUICE" restore -config "$T/sluice.yml" -replica $r -o "$T/$r.db" "$T/app.db" \
    >"$T/restore-$r.log" 2>&1 || { cat "$T/restore-$r.log"; fail "restore from $r failed"; }
  assert_same_db "$T/app.db" "$T/$r.db"
done

# Bare URLs: endpoint and key from a connection string, nothing else.
unset LITESTREAM_AZURE_ACCOUNT_KEY
export AZURE_STORAGE_CONNECTION_STRING="DefaultEndpointsProtocol=http;AccountName=$AZ_ACCOUNT;AccountKey=$AZ_KEY;BlobEndpoint=$AZ_ENDPOINT;"
"$SLUICE" restore -o "$T/url1.db" "abs://$AZ_ACCOUNT@$C/cfg/app" >"$T/r1.log" 2>&1 ||
  { cat "$T/r1.log"; fail "restore from abs://ACCOUNT@CONTAINER/PATH failed"; }
assert_same_db "$T/app.db" "$T/url1.db"
AZURE_STORAGE_ACCOUNT=$AZ_ACCOUNT "$SLUICE" restore -o "$T/url2.db" \
  "abs://$AZ_ACCOUNT/$C/url/app" >"$T/r2.log" 2>&1 ||
  { cat "$T/r2.log"; fail "restore from abs://ACCOUNT/CONTAINER/PATH failed"; }
assert_same_db "$T/app.db" "$T/url2.db"
"$SLUICE" generations "abs://$AZ_ACCOUNT@$C/url/app" | grep -Eq '[0-9a-f]{16}' ||
  fail "generations of a URL"
unset AZURE_STORAGE_CONNECTION_STRING

# A wrong key: one clear error, at once (403 is not retried).
bad=$(head -c 64 /dev/zero | base64 -w0)
start=$(date +%s%N)
out=$(LITESTREAM_AZURE_ACCOUNT_KEY=$bad AZURE_STORAGE_CONNECTION_STRING="BlobEndpoint=$AZ_ENDPOINT" \
  "$SLUICE" restore -o "$T/bad.db" "abs://$AZ_ACCOUNT@$C/cfg/app" 2>&1) &&
  fail "restore with a wrong key succeeded"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "$out" | grep -Eq 'AuthenticationFailed|AuthorizationFailure' ||
  { echo "$out"; fail "wrong key: no Azure error code in the message"; }
echo "$out" | grep -q "$bad" && fail "the key appears in the message"
[ "$ms" -lt 3000 ] || fail "wrong key took ${ms}ms (retried?)"
[ -e "$T/bad.db" ] && fail "a database was written with a wrong key"
echo "wrong key: $(echo "$out" | grep -E 'Authentication|Authorization' | head -1)"
echo "PASS: $(cat "$T/writer.out"), $(rows "$T/keys.db") rows"
