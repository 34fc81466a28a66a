#!/usr/bin/env bash
# The container image, built from deploy/docker/Dockerfile and run for real,
# without Docker Hub or a container daemon: buildah (chroot isolation, which
# shares the host's network, so the S3 test server on 127.0.0.1 is reachable
# from inside) on a Debian 12 base made by debootstrap from the apt mirror.
#
#   tests/e2e/image.sh --prepare   install buildah/debootstrap if missing,
#                                  make the base (once) and build the image
#                                  (when its inputs changed); never fails.
#                                  scripts/check.sh runs it before the tests,
#                                  outside the loopback-only namespace: the
#                                  base and the Dockerfile's apt-get steps
#                                  need the mirror.
#   tests/e2e/image.sh             (CTest) the cases below, in the image;
#                                  builds it first if it is not current and
#                                  the mirror is reachable, else skips (77).
#
# Cache: $SLUICE_IMAGE_CACHE, else $BUILDDIR/image-cache: the debootstrap
# root file system (a tar, made once), buildah's storage (the base images,
# the Dockerfile's cached layers, the image) and the key of the built image
# (a hash of the Dockerfile and of every file it copies).
#
# Cases, each in the image:
#  1. `sluice version`, the same as the binary built here; `ldd` finds every
#     library, and each package the runtime stage installs (but
#     ca-certificates) provides one of them; no sqlite3 (nothing needs it).
#  2. The entrypoint on an empty volume, the replica (S3, moto) holding a
#     backup: the database is restored before the application starts
#     (integrity ok, the source's rows), the application runs under
#     `replicate -exec` and its writes reach the replica (restored on the
#     host: equal to the volume's database; two generations).
#  3. The entrypoint with no backup yet (-if-replica-exists): the
#     application starts on no database, creates it, and it is replicated.
#  4. A restore that fails (the store unreachable): non-zero exit, one clear
#     line naming the store, the application never starts.
#  5. A sluice command as the first argument runs that command, no restore.
#  6. deploy/kubernetes/restore-on-startup.sh: restores a missing database,
#     leaves an existing one, accepts an empty replica, fails on an
#     unreachable store.
# The application is the plain build's sqlwriter, mounted into the image;
# in an ASan build the test skips (the image has its own build of sluice,
# and an ASan writer does not run there).
source "$(dirname "$0")/../lib/common.sh"
CACHE=${SLUICE_IMAGE_CACHE:-$BUILDDIR/image-cache}
TAG=localhost/sluice:test
# Bump when the base recipe below changes.
BASE_RECIPE=bookworm-minbase-v1
MIRROR=$(awk '/^URIs:/ { print $2; exit }' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
: "${MIRROR:=http://deb.debian.org/debian}"

# The storage driver, chosen once per cache: overlay where the kernel lets
# buildah mount it (layers are diffs), else vfs (a full copy per layer).
DRIVER=$(cat "$CACHE/driver" 2>/dev/null)
B() {
  CONTAINERS_CONF=$CACHE/containers.conf buildah --root "$CACHE/storage" \
    --runroot "$CACHE/run" --storage-driver "${DRIVER:-vfs}" "$@"
}

choose_driver() {
  local p=$CACHE/probe c
  [ -n "$DRIVER" ] && return 0
  DRIVER=vfs
  if c=$(CONTAINERS_CONF=$CACHE/containers.conf buildah --root "$p/storage" \
    --runroot "$p/run" --storage-driver overlay from scratch 2>/dev/null) &&
    CONTAINERS_CONF=$CACHE/containers.conf buildah --root "$p/storage" \
      --runroot "$p/run" --storage-driver overlay mount "$c" >/dev/null 2>&1; then
    DRIVER=overlay
  fi
  CONTAINERS_CONF=$CACHE/containers.conf buildah --root "$p/storage" \
    --runroot "$p/run" --storage-driver overlay rm -a >/dev/null 2>&1
  rm -rf "$p"
  echo "$DRIVER" >"$CACHE/driver"
}

log() { echo "image: $*"; }

# image_key: hash of the Dockerfile and of every file its COPY lines take
# from the context (the repository root).
image_key() {
  local srcs
  srcs=$(awk 'toupper($1) == "COPY" && $0 !~ /--from/ {
      for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i }' \
    "$SRCDIR/deploy/docker/Dockerfile")
  {
    echo "$BASE_RECIPE"
    sha256sum "$SRCDIR/deploy/docker/Dockerfile" | cut -d' ' -f1
    # shellcheck disable=SC2086 # one word per COPY source
    (cd "$SRCDIR" && find $srcs -type f -print0 | LC_ALL=C sort -z |
      xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
}

mirror_reachable() {
  curl -s -o /dev/null --max-time 5 "$MIRROR/dists/bookworm/Release"
}

# make_base: debootstrap's minbase once (a tar in the cache), then the two
# images the Dockerfile starts from, as Docker Hub's debian:12 and
# debian:12-slim are made (debuerreotype): apt cleans its cache after each
# install; -slim has no documentation, manuals or translations.
make_base() {
  local tar=$CACHE/rootfs-$BASE_RECIPE.tar c m
  if [ ! -s "$tar" ]; then
    log "debootstrap $BASE_RECIPE from $MIRROR (once)"
    rm -rf "$CACHE/rootfs"
    debootstrap --variant=minbase bookworm "$CACHE/rootfs" "$MIRROR" \
      >"$CACHE/debootstrap.log" 2>&1 || return 1
    m=$CACHE/rootfs
    rm -rf "$m"/var/lib/apt/lists/* "$m"/var/cache/apt/*.bin \
      "$m"/var/cache/apt/archives/*.deb "$m/etc/apt/sources.list"
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
      cp /etc/apt/sources.list.d/debian.sources "$m/etc/apt/sources.list.d/"
    else
      echo "deb $MIRROR bookworm main" >"$m/etc/apt/sources.list"
    fi
    cat >"$m/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    echo 'Acquire::Languages "none";' >"$m/etc/apt/apt.conf.d/docker-no-languages"
    echo 'Apt::AutoRemove::SuggestsImportant "false";' \
      >"$m/etc/apt/apt.conf.d/docker-autoremove-suggests"
    tar -C "$m" -cf "$tar.tmp" . && mv "$tar.tmp" "$tar" || return 1
    rm -rf "$m"
  fi
  for variant in 12 12-slim; do
    B inspect --type image "localhost/debian:$variant" >/dev/null 2>&1 && continue
    c=$(B from scratch) && m=$(B mount "$c") || return 1
    tar -C "$m" -xf "$tar" || return 1
    if [ "$variant" = 12-slim ]; then
      cat >"$m/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF
      find "$m/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
      find "$m/usr/share/doc" -mindepth 1 -type d -empty -delete
      rm -rf "$m"/usr/share/groff/* "$m"/usr/share/info/* "$m"/usr/share/man/*
      find "$m/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias \
        -exec rm -rf {} +
    fi
    B config --cmd /bin/bash "$c" && B commit -q --rm "$c" "localhost/debian:$variant" >/dev/null ||
      return 1
  done
}

# prepare: tools, base, image.  Returns 0 with the image current; else 1
# with the reason in $CACHE/status ("skip: ..." when this machine cannot,
# "fail: ..." when the Dockerfile does not build).
prepare() {
  local key start=$SECONDS
  mkdir -p "$CACHE"
  # One build at a time per cache.
  exec 9>"$CACHE/lock"
  flock 9
  DRIVER=$(cat "$CACHE/driver" 2>/dev/null)
  key=$(image_key)
  if [ "$(cat "$CACHE/image.key" 2>/dev/null)" = "$key" ] && [ -n "$DRIVER" ] &&
    B inspect --type image "$TAG" >/dev/null 2>&1; then
    return 0
  fi
  rm -f "$CACHE/image.key"
  echo "skip: not prepared" >"$CACHE/status"
  if [ "$(id -u)" -ne 0 ]; then
    echo "skip: buildah and debootstrap need root" >"$CACHE/status"
    return 1
  fi
  if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
    if ! mirror_reachable; then
      echo "skip: buildah/debootstrap missing and $MIRROR unreachable" >"$CACHE/status"
      return 1
    fi
    log "installing buildah debootstrap"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends buildah debootstrap; } >"$CACHE/apt.log" 2>&1 || {
      echo "skip: cannot install buildah/debootstrap (see $CACHE/apt.log)" >"$CACHE/status"
      return 1
    }
  fi
  # No rlimits for the build's containers: setting them is not permitted
  # in every sandbox.
  printf '[containers]\ndefault_ulimits = []\n' >"$CACHE/containers.conf"
  if ! mirror_reachable; then
    echo "skip: $MIRROR unreachable (run tests/e2e/image.sh --prepare where it is; scripts/check.sh does)" \
      >"$CACHE/status"
    return 1
  fi
  choose_driver
  if ! B images >/dev/null 2>&1; then
    echo "skip: buildah cannot use its storage here" >"$CACHE/status"
    return 1
  fi
  if ! make_base; then
    echo "skip: cannot make the Debian base (see $CACHE/debootstrap.log)" >"$CACHE/status"
    return 1
  fi
  log "building $TAG from deploy/docker/Dockerfile (key $key)"
  # --layers: a source change rebuilds from `COPY src` on, not apt-get.
  if ! (cd "$SRCDIR" && B bud --isolation chroot --network host --pull=never \
    --layers -f deploy/docker/Dockerfile -t "$TAG" .) >"$CACHE/build.log" 2>&1; then
    if mirror_reachable; then
      echo "fail: the image does not build (see $CACHE/build.log)" >"$CACHE/status"
    else
      echo "skip: $MIRROR unreachable during the build (see $CACHE/build.log)" >"$CACHE/status"
    fi
    tail -n 20 "$CACHE/build.log"
    return 1
  fi
  # Drop the layers of earlier builds.  With overlay (layers are diffs) the
  # build stage is tagged first, so that its layers stay as the next build's
  # cache (a source change then skips apt-get); vfs copies every layer
  # whole, so there they go too.
  if [ "$DRIVER" = overlay ]; then
    (cd "$SRCDIR" && B bud --isolation chroot --network host --pull=never --layers \
      --target build -f deploy/docker/Dockerfile -t localhost/sluice-build:cache .) \
      >>"$CACHE/build.log" 2>&1
  fi
  B rmi --prune >/dev/null 2>&1
  echo "$key" >"$CACHE/image.key"
  echo "ok" >"$CACHE/status"
  log "built in $((SECONDS - start)) s ($DRIVER): $(B images --format '{{.Size}}' "$TAG")"
}

# packages IMAGE: the Debian packages installed in IMAGE, sorted.
packages() {
  local c
  c=$(B from --pull=never "$1") || return 1
  # shellcheck disable=SC2016 # dpkg-query's format, not the shell's
  B run --isolation chroot "$c" -- dpkg-query -W -f '${Package}\n' | LC_ALL=C sort
  B rm "$c" >/dev/null
}

if [ "${1:-}" = --prepare ]; then
  prepare || log "not built: $(cat "$CACHE/status")"
  exit 0
fi
# --sizes (bench/run.sh): the image's size, built first if needed, as a
# markdown table.
if [ "${1:-}" = --sizes ]; then
  prepare >"$T/prepare.log" 2>&1 || { echo "Not built: $(sed 's/^[a-z]*: //' "$CACHE/status")"; exit 0; }
  B push -q "$TAG" "oci-archive:$T/image.tar" >/dev/null 2>&1 || fail "buildah push"
  c=$(B from --pull=never "$TAG") || fail "buildah from"
  m=$(B mount "$c") || fail "buildah mount"
  echo "| image | size |"
  echo "|---|---|"
  echo "| sluice image, uncompressed (\`buildah images\`) | $(B images --format '{{.Size}}' "$TAG") |"
  echo "| sluice image, compressed (what a pull downloads) | $(du -m "$T/image.tar" | cut -f1) MB |"
  echo "| its base, debian:12-slim as made here | $(B images --format '{{.Size}}' localhost/debian:12-slim) |"
  echo "| \`sluice\` in the image (stripped) | $(($(stat -c %s "$m/usr/local/bin/sluice") / 1024)) KiB |"
  echo "| Debian packages the runtime stage adds | $(comm -13 <(packages localhost/debian:12-slim) <(packages "$TAG") | wc -l) |"
  B rm "$c" >/dev/null
  exit 0
fi

# ---------------------------------------------------------------- the test
# The image holds its own build of sluice; the application under test is
# the plain build's sqlwriter, which an ASan build's cannot stand in for.
if ldd "$SQLWRITER" 2>/dev/null | grep -q libasan; then
  skip "the image is tested with the plain build (this one is ASan)"
fi
if ! prepare; then
  case $(cat "$CACHE/status") in
  fail:*) fail "$(cat "$CACHE/status")" ;;
  *) skip "image: $(sed 's/^skip: //' "$CACHE/status")" ;;
  esac
fi
echo "image $TAG: $(B images --format '{{.Size}}' "$TAG"), key $(cat "$CACHE/image.key")"

# prepare holds the cache's lock (fd 9) until the test ends: containers a
# killed run left behind can go.
B rm -a >/dev/null 2>&1
CTR=$(B from --pull=never "$TAG") || fail "buildah from $TAG"
trap 'B rm "$CTR" >/dev/null 2>&1; cleanup' EXIT
EP=$(B inspect --type image --format '{{range .OCIv1.Config.Entrypoint}}{{.}} {{end}}' "$TAG")
EP=${EP% }
[ "$EP" = /usr/local/bin/docker-entrypoint.sh ] || fail "image entrypoint is '$EP'"
mkdir -p "$T/replica"; : >"$T/none.yml"

# in_image VOLUME CONFIG CMD...: CMD in the image with VOLUME on /data, CONFIG
# on /etc/sluice.yml, $T/replica on /replica and the writer on
# /opt/test/sqlwriter; output in $T/out.
in_image() {
  local vol=$1 cfg=$2 rc=0
  shift 2
  mkdir -p "$vol"
  timeout 120 buildah --root "$CACHE/storage" --runroot "$CACHE/run" \
    --storage-driver "$DRIVER" run --isolation chroot --network host \
    -v "$vol:/data" -v "$cfg:/etc/sluice.yml:ro" -v "$T/replica:/replica" \
    -v "$SQLWRITER:/opt/test/sqlwriter:ro" "$CTR" -- "$@" >"$T/out" 2>&1 || rc=$?
  return $rc
}
export CONTAINERS_CONF=$CACHE/containers.conf

# ------------------------------------------------ 1. version, libraries
in_image "$T/vol-1" "$T/none.yml" /usr/local/bin/sluice version || { cat "$T/out"; fail "sluice version in the image"; }
VERSION=$(cat "$T/out")
[ "$VERSION" = "$("$SLUICE" version)" ] ||
  fail "image's sluice version '$VERSION' is not this build's '$("$SLUICE" version)'"
in_image "$T/vol-1" "$T/none.yml" /usr/local/bin/litestream version ||
  { cat "$T/out"; fail "no litestream link in the image"; }
in_image "$T/vol-1" "$T/none.yml" ldd /usr/local/bin/sluice || { cat "$T/out"; fail "ldd in the image"; }
grep -q 'not found' "$T/out" && { cat "$T/out"; fail "a library sluice links is missing from the image"; }
# The packages that hold what ldd resolves to, those the image adds to its
# base, and those the Dockerfile's runtime stage names.
cat >"$T/vol-1/pkgs.sh" <<'EOF'
ldd /usr/local/bin/sluice | awk '$2 == "=>" { print $3 }' | while read -r lib; do
  real=$(readlink -f "$lib")
  for p in "$lib" "${lib#/usr}" "/usr${lib#/usr}" "$real" "${real#/usr}"; do
    dpkg -S "$p" 2>/dev/null
  done
done | cut -d: -f1 | sort -u >/data/linked
dpkg-query -W -f '${Package}\n' >/data/installed
EOF
in_image "$T/vol-1" "$T/none.yml" sh /data/pkgs.sh || { cat "$T/out"; fail "package listing in the image"; }
packages localhost/debian:12-slim >"$T/base-pkgs" || fail "packages of debian:12-slim"
LC_ALL=C sort "$T/vol-1/installed" >"$T/installed"
comm -13 "$T/base-pkgs" "$T/installed" >"$T/added"
[ -s "$T/vol-1/linked" ] || fail "no package found for the linked libraries"
# Named in the runtime stage's apt-get install (after the last FROM).
awk '/^FROM/ { s = "" } { s = s " " $0 } END { print s }' "$SRCDIR/deploy/docker/Dockerfile" |
  sed -e 's/\\//g' -e 's/.*--no-install-recommends//' -e 's/&&.*//' | tr -s ' ' '\n' |
  sed '/^$/d' >"$T/named"
[ -s "$T/named" ] || fail "no apt-get install in the Dockerfile's runtime stage"
while read -r p; do
  [ "$p" = ca-certificates ] && continue # TLS roots: data, not linked
  grep -qx "$p" "$T/vol-1/linked" || fail "the runtime stage installs $p, which sluice does not link"
done <"$T/named"
# What the image adds: linked libraries, and ca-certificates with what it
# needs (openssl, to build its bundle); the libraries' data (libldap-common:
# ldap.conf, libsasl2-modules-db: libdb) comes with them.
while read -r p; do
  grep -qx "$p" "$T/vol-1/linked" && continue
  case $p in
  ca-certificates | openssl | libldap-common | libsasl2-modules-db) ;;
  *) fail "the image adds package $p, which sluice does not link" ;;
  esac
done <"$T/added"
in_image "$T/vol-1" "$T/none.yml" sh -c 'command -v sqlite3' && { cat "$T/out"; fail "sqlite3 in the image"; }
if grep -v '^ *#' "$SRCDIR/deploy/docker/docker-entrypoint.sh" \
  "$SRCDIR/deploy/kubernetes/restore-on-startup.sh" | grep -qw sqlite3; then
  fail "the entrypoint scripts call sqlite3, which the image does not hold"
fi
echo "1. version $VERSION; $(wc -l <"$T/vol-1/linked") linked packages, $(wc -l <"$T/added") added to the base: $(tr '\n' ' ' <"$T/added")"

# ----------------------------------- 2. entrypoint: restore, then -exec
MOTO=http://127.0.0.1:5000
SECRET=image-test-secret-$RANDOM$RANDOM
BUCKET=image-$$-$RANDOM
# replica_yml DB_PATH WHERE: a config; WHERE is s3 (moto), dead (an S3
# endpoint nothing listens on) or a file:// URL.
replica_yml() {
  echo "dbs:"
  echo "  - path: $1"
  echo "    replicas:"
  case $2 in
  s3 | dead)
    local ep=$MOTO
    [ "$2" = dead ] && ep=http://127.0.0.1:9
    cat <<YML
      - type: s3
        bucket: $BUCKET
        path: app
        endpoint: $ep
        force-path-style: true
        access-key-id: image-test
        secret-access-key: $SECRET
        sync-interval: 100ms
YML
    ;;
  *) printf '      - url: %s\n        sync-interval: 100ms\n' "$2" ;;
  esac
}
if curl -s -o /dev/null --max-time 2 "$MOTO/moto-api/" &&
  curl -sf -o /dev/null -X PUT "$MOTO/$BUCKET"; then
  STORE=s3
else
  # s3rver's listings do not serve restore (see s3_replicate.sh).
  echo "note: moto not running: case 2 uses a file replica"
  STORE=file:///replica/a
fi
mkdir -p "$T/src"
if [ "$STORE" = s3 ]; then
  replica_yml "$T/src/app.db" s3 >"$T/host-a.yml"
else
  replica_yml "$T/src/app.db" "file://$T/replica/a" >"$T/host-a.yml"
fi
replica_yml /data/app.db "$STORE" >"$T/a.yml"
gens() { # CONFIG DB: number of generations
  "$SLUICE" generations -config "$1" "$2" 2>/dev/null | awk 'NR > 1' | wc -l
}
"$SQLWRITER" -db "$T/src/app.db" -n 1 >/dev/null
sluice_start -config "$T/host-a.yml"
has_gen() { [ "$(gens "$T/host-a.yml" "$T/src/app.db")" -ge 1 ]; }
wait_until 20 has_gen ||
  fail "2. no generation uploaded from the host"
"$SQLWRITER" -db "$T/src/app.db" -n 300 -rows 3 >/dev/null || fail "2. writer"
sluice_stop
SRC_ROWS=$(rows "$T/src/app.db")
# The application: starts only on the restored database, then writes.
in_image "$T/vol-a" "$T/a.yml" "$EP" sh -c \
  'test -s /data/app.db && echo started >/data/app-started &&
   exec /opt/test/sqlwriter -db /data/app.db -n 100 -rows 2' ||
  { cat "$T/out"; fail "2. entrypoint exited non-zero"; }
grep -q 'app.db does not exist: restoring it' "$T/out" || { cat "$T/out"; fail "2. no restore line"; }
grep -q '^committed=100 ' "$T/out" || { cat "$T/out"; fail "2. the application did not run"; }
[ -f "$T/vol-a/app-started" ] || fail "2. the application started without the restored database"
grep -q "$SECRET" "$T/out" && fail "2. the secret is in the output"
ic=$(sqlite3 "$T/vol-a/app.db" 'PRAGMA integrity_check')
[ "$ic" = ok ] || fail "2. integrity_check of the volume's database: $ic"
[ "$(rows "$T/vol-a/app.db")" -eq $((SRC_ROWS + 200)) ] ||
  fail "2. $(rows "$T/vol-a/app.db") rows, want $SRC_ROWS restored + 200 written"
q="SELECT id, k, v FROM t ORDER BY id LIMIT $SRC_ROWS"
[ "$(sqlite3 "$T/vol-a/app.db" "$q" | sha256sum)" = "$(sqlite3 "$T/src/app.db" "$q" | sha256sum)" ] ||
  fail "2. the restored rows differ from the source's"
# The application's writes reached the replica: restore it on the host.
"$SLUICE" restore -config "$T/host-a.yml" -o "$T/check-a.db" "$T/src/app.db" >"$T/restore.log" 2>&1 ||
  { cat "$T/restore.log"; fail "2. host restore of the replica"; }
assert_same_db "$T/vol-a/app.db" "$T/check-a.db"
[ "$(gens "$T/host-a.yml" "$T/src/app.db")" -eq 2 ] ||
  fail "2. $(gens "$T/host-a.yml" "$T/src/app.db") generations, want 2 (host, then the container's)"
echo "2. entrypoint ($STORE): restored $SRC_ROWS rows, the application added 200, the replica has them (2 generations)"

# ------------------------------- 3. entrypoint: no backup yet, new database
replica_yml /data/app.db file:///replica/b >"$T/b.yml"
in_image "$T/vol-b" "$T/b.yml" "$EP" sh -c \
  'test ! -e /data/app.db && echo started >/data/app-started &&
   exec /opt/test/sqlwriter -db /data/app.db -n 50' ||
  { cat "$T/out"; fail "3. entrypoint exited non-zero"; }
[ -f "$T/vol-b/app-started" ] || { cat "$T/out"; fail "3. the application did not start on no database"; }
grep -q '^committed=50 ' "$T/out" || { cat "$T/out"; fail "3. the application did not run"; }
"$SLUICE" restore -o "$T/check-b.db" "file://$T/replica/b" >"$T/restore.log" 2>&1 ||
  { cat "$T/restore.log"; fail "3. host restore of the new database's replica"; }
assert_same_db "$T/vol-b/app.db" "$T/check-b.db"
[ "$(rows "$T/check-b.db")" -eq 50 ] || fail "3. $(rows "$T/check-b.db") rows, want 50"
[ "$(find "$T/replica/b/generations" -mindepth 1 -maxdepth 1 | wc -l)" -eq 1 ] || fail "3. want one generation"
echo "3. entrypoint, no backup yet: the application created the database, replicated (1 generation)"

# ------------------------------------- 4. entrypoint: restore fails
replica_yml /data/app.db dead >"$T/c.yml"
in_image "$T/vol-c" "$T/c.yml" "$EP" sh -c 'echo started >/data/app-started' &&
  { cat "$T/out"; fail "4. entrypoint succeeded with the store unreachable"; }
[ -e "$T/vol-c/app-started" ] && fail "4. the application started after a failed restore"
[ -e "$T/vol-c/app.db" ] && fail "4. a database was left after a failed restore"
grep -q "s3://$BUCKET/app/.*Couldn't connect" "$T/out" ||
  { cat "$T/out"; fail "4. no clear line naming the store"; }
grep -q "$SECRET" "$T/out" && fail "4. the secret is in the output"
echo "4. entrypoint, store unreachable: $(grep -o "s3://$BUCKET.*" "$T/out" | head -1 | cut -c1-90)"

# ----------------------------- 5. a sluice command as the first argument
in_image "$T/vol-d" "$T/a.yml" "$EP" version || { cat "$T/out"; fail "5. entrypoint version"; }
[ "$(cat "$T/out")" = "$VERSION" ] || { cat "$T/out"; fail "5. entrypoint version"; }
in_image "$T/vol-d" "$T/a.yml" "$EP" generations /data/app.db || { cat "$T/out"; fail "5. entrypoint generations"; }
[ "$(awk 'NR > 1' "$T/out" | wc -l)" -eq 2 ] || { cat "$T/out"; fail "5. generations: want 2 lines"; }
grep -q restoring "$T/out" && fail "5. a sluice command restored first"
[ -z "$(ls -A "$T/vol-d")" ] || fail "5. a sluice command wrote to the volume"
echo "5. entrypoint with a sluice command: version, generations (2) as is"

# ------------------------------------------- 6. restore-on-startup.sh
in_image "$T/vol-e" "$T/a.yml" /usr/local/bin/restore-on-startup.sh ||
  { cat "$T/out"; fail "6. restore-on-startup.sh"; }
grep -q 'app.db not found, restoring' "$T/out" || { cat "$T/out"; fail "6. no restore line"; }
assert_same_db "$T/vol-a/app.db" "$T/vol-e/app.db"
in_image "$T/vol-e" "$T/a.yml" /usr/local/bin/restore-on-startup.sh ||
  { cat "$T/out"; fail "6. restore-on-startup.sh, database present"; }
grep -q 'app.db exists, skipping restore' "$T/out" || { cat "$T/out"; fail "6. restored over an existing database"; }
replica_yml /data/app.db file:///replica/empty >"$T/e.yml"
in_image "$T/vol-f" "$T/e.yml" /usr/local/bin/restore-on-startup.sh ||
  { cat "$T/out"; fail "6. restore-on-startup.sh, no backup yet"; }
[ -e "$T/vol-f/app.db" ] && fail "6. a database made from an empty replica"
in_image "$T/vol-g" "$T/c.yml" /usr/local/bin/restore-on-startup.sh &&
  { cat "$T/out"; fail "6. restore-on-startup.sh succeeded with the store unreachable"; }
grep -q "s3://$BUCKET/app/.*Couldn't connect" "$T/out" || { cat "$T/out"; fail "6. no clear line naming the store"; }
echo "6. restore-on-startup.sh: restores, leaves an existing database, accepts an empty replica, fails on a dead store"
echo PASS
