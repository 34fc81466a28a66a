#!/usr/bin/env bash
# The files in deploy/: systemd units accepted by systemd-analyze and
# consistent with what sluice does (shellcheck: e2e/shellcheck);
# the Docker entrypoint and restore-on-startup.sh restore a missing
# database from a real replica and start the application under
# `replicate -exec`; the Dockerfile installs every library the binary
# needs; the Kubernetes and compose YAML parse and agree with each other;
# every example config passes `sluice config check`.  (Docker and a
# cluster cannot run here, so those files are checked statically.)
source "$SRCDIR/tests/lib/common.sh"
D=$SRCDIR/deploy
NOTES=()


# --- systemd -----------------------------------------------------------
if command -v systemd-analyze >/dev/null; then
  for unit in sluice.service sluice-exec.service; do
    # verify wants ExecStart's binary to exist: use the built one.
    sed -e "s#/usr/local/bin/sluice#$SLUICE#" -e "s#/usr/local/bin/app#/bin/sleep#" \
      "$D/systemd/$unit" >"$T/$unit"
    out=$(cd "$T" && systemd-analyze verify "./$unit" 2>&1) ||
      { echo "$out"; fail "systemd-analyze verify $unit"; }
    [ -z "$out" ] || { echo "$out"; fail "systemd-analyze verify $unit warns"; }
  done
  echo "systemd-analyze verify: both units clean"
else
  NOTES+=("systemd-analyze not installed: units not verified")
fi

# unit_get UNIT KEY: the last value of KEY.
unit_get() { sed -n "s/^$2=//p" "$D/systemd/$1" | tail -n1; }
# seconds DURATION: systemd time span (s, min, h) in seconds.
seconds() {
  case $1 in
  *min) echo $((${1%min} * 60)) ;;
  *h) echo $((${1%h} * 3600)) ;;
  *s) echo "${1%s}" ;;
  *) echo "$1" ;;
  esac
}
for unit in sluice.service sluice-exec.service; do
  [ "$(unit_get $unit Type)" = notify ] || fail "$unit: Type is not notify"
  [ "$(unit_get $unit NotifyAccess)" = main ] || fail "$unit: NotifyAccess"
  unit_get $unit ExecStart |
    grep -q '^/usr/local/bin/sluice replicate -config /etc/sluice.yml' ||
    fail "$unit: ExecStart"
  [ "$(unit_get $unit EnvironmentFile)" = -/etc/default/sluice ] ||
    fail "$unit: EnvironmentFile"
  [ "$(unit_get $unit Restart)" = always ] || fail "$unit: Restart"
  [ -n "$(unit_get $unit WatchdogSec)" ] || fail "$unit: no WatchdogSec"
  # Above the default shutdown-timeout of 30s.
  [ "$(seconds "$(unit_get $unit TimeoutStopSec)")" -gt 30 ] ||
    fail "$unit: TimeoutStopSec not above shutdown-timeout (30s)"
  # Notify needs AF_UNIX, the stores and metrics AF_INET/AF_INET6.
  for af in AF_UNIX AF_INET AF_INET6; do
    unit_get $unit RestrictAddressFamilies | grep -qw "$af" ||
      fail "$unit: RestrictAddressFamilies lacks $af"
  done
  [ "$(unit_get $unit ProtectSystem)" = strict ] || fail "$unit: ProtectSystem"
  [ -n "$(unit_get $unit ReadWritePaths)" ] || fail "$unit: ReadWritePaths"
  [ "$(unit_get $unit LimitNOFILE)" -ge 65536 ] || fail "$unit: LimitNOFILE"
done
# User= is the databases' (so the application's) user: RemoveIPC would
# delete the application's IPC objects when sluice stops.
grep -q '^RemoveIPC=yes' "$D"/systemd/*.service && fail "RemoveIPC=yes with the application's user"
[ "$(unit_get sluice-exec.service KillMode)" = mixed ] ||
  fail "sluice-exec.service: KillMode=mixed (SIGTERM to sluice only)"
unit_get sluice-exec.service ExecStart | grep -q -- '-exec "' ||
  fail "sluice-exec.service: no -exec"
# The syscall filter of both units (@system-service minus @privileged)
# keeps what sluice calls: inotify, setrlimit, fork/exec (for -exec),
# sockets, fsync.
# expand GROUP: every syscall of a filter set, nested sets included.
expand() {
  local x
  systemd-analyze syscall-filter "$1" | awk 'NR > 1 && $1 !~ /^#/ { print $1 }' |
    while read -r x; do
      case $x in @*) expand "$x" ;; *) echo "$x" ;; esac
    done
}
if command -v systemd-analyze >/dev/null; then
  for unit in sluice.service sluice-exec.service; do
    grep -qx 'SystemCallFilter=@system-service' "$D/systemd/$unit" ||
      fail "$unit: filter is not @system-service"
  done
  expand @system-service | sort -u >"$T/allowed"
  expand @privileged | sort -u >"$T/privileged"
  for sc in inotify_add_watch inotify_init1 prlimit64 setrlimit execve clone \
    clone3 wait4 kill socket sendto connect bind listen accept4 epoll_wait \
    eventfd2 fdatasync fsync pread64 pwrite64 renameat2 mkdir fchmod; do
    grep -qx "$sc" "$T/allowed" || fail "@system-service lacks $sc"
    if grep -qx 'SystemCallFilter=~@privileged' "$D/systemd/sluice.service"; then
      grep -qx "$sc" "$T/privileged" && fail "~@privileged removes $sc"
    fi
  done
fi
# ExecReload, run as systemd would: a new database in the config starts
# replicating without a restart; a broken config fails the reload at the
# check and the daemon keeps running.
mkdir -p "$T/reload"
cat >"$T/reload/sluice.yml" <<YML
dbs:
  - path: $T/reload/one.db
    replicas:
      - url: file://$T/reload/replica-one
YML
"$SQLWRITER" -db "$T/reload/one.db" -n 10 >/dev/null
"$SQLWRITER" -db "$T/reload/two.db" -n 10 >/dev/null
sluice_start -config "$T/reload/sluice.yml"
wait_until 10 test -d "$T/reload/replica-one/generations" || fail "reload: first db"
# exec_reload UNIT: runs each ExecReload line with the test's paths.
exec_reload() {
  local line
  while IFS= read -r line; do
    line=${line//\/usr\/local\/bin\/sluice/$SLUICE}
    line=${line//\/etc\/sluice.yml/$T/reload/sluice.yml}
    line=${line//\$MAINPID/$SLUICE_PID}
    eval "$line" >>"$T/reload/reload.log" 2>&1 || return 1
  done < <(sed -n 's/^ExecReload=//p' "$D/systemd/$1")
}
cat >>"$T/reload/sluice.yml" <<YML
  - path: $T/reload/two.db
    replicas:
      - url: file://$T/reload/replica-two
YML
exec_reload sluice.service || { cat "$T/reload/reload.log"; fail "ExecReload failed"; }
wait_until 10 test -d "$T/reload/replica-two/generations" ||
  fail "reload: the added database is not replicated"
echo "dbs: [" >>"$T/reload/sluice.yml"
exec_reload sluice.service && fail "ExecReload accepted a broken config"
grep -q "^error: $T/reload/sluice.yml:" "$T/reload/reload.log" ||
  { cat "$T/reload/reload.log"; fail "failed reload does not say why"; }
kill -0 "$SLUICE_PID" || fail "sluice died on a failed reload"
sluice_stop TERM
grep -qxF "ExecReload=/bin/kill -HUP \$MAINPID" "$D/systemd/sluice-exec.service" ||
  fail "sluice-exec.service: ExecReload"
echo "ExecReload: checks the config, then SIGHUP reloads it"
grep -q '^AWS_SECRET_ACCESS_KEY=REPLACE_WITH' "$D/systemd/sluice.default" ||
  fail "sluice.default: placeholder credentials expected"
echo "systemd units: directives consistent with sluice"

# --- entrypoint and restore-on-startup.sh, against a real replica --------
DATA=$T/data
DB=$DATA/app.db
mkdir -p "$DATA"
cat >"$T/sluice.yml" <<YML
dbs:
  - path: $DB
    replicas:
      - url: file://$T/replica
        sync-interval: 100ms
YML
"$SQLWRITER" -db "$DB" -n 300 >/dev/null
timeout 60 "$SLUICE" replicate -config "$T/sluice.yml" -exec "sleep 0.3" \
  >>"$T/sluice.log" 2>&1 || fail "making the replica"
cp "$DB" "$T/original.db"
# The host is lost: no database, no WAL, no meta directory.
rm -rf "$DATA"
mkdir -p "$DATA"

export SLUICE_BIN=$SLUICE SLUICE_CONFIG=$T/sluice.yml
ENTRY=$D/docker/docker-entrypoint.sh
# The child runs after the restore (it writes into the restored table),
# and gets its arguments intact through -exec, quotes included.
rc=0
sh "$ENTRY" sh -c "sqlite3 -cmd '.timeout 5000' '$DB' \
  \"INSERT INTO t (k, v) VALUES (424242, 'from the child')\" && \
  printf '%s|%s' \"\$0\" \"\$1\" >'$T/args'; sleep 1" "it's" 'a "b" $HOME' \
  >"$T/entry.log" 2>&1 || rc=$?
[ "$rc" -eq 0 ] || { cat "$T/entry.log"; fail "entrypoint exited $rc"; }
grep -q "restoring it from its replica" "$T/entry.log" ||
  { cat "$T/entry.log"; fail "entrypoint did not restore"; }
[ "$(cat "$T/args")" = "it's|a \"b\" \$HOME" ] ||
  fail "arguments through -exec: got [$(cat "$T/args")]"
[ "$(sqlite3 "$DB" 'SELECT v FROM t WHERE k = 424242')" = "from the child" ] ||
  fail "the child's write is not in the restored database"
# The replica holds the restored rows plus the child's write.
"$SLUICE" restore -config "$T/sluice.yml" -o "$T/after.db" "$DB" \
  >"$T/restore.log" 2>&1 || { cat "$T/restore.log"; fail "restore after entrypoint"; }
assert_same_db "$DB" "$T/after.db"
[ "$(rows "$T/after.db")" -eq $(($(rows "$T/original.db") + 1)) ] ||
  fail "replica: $(rows "$T/after.db") rows, want $(rows "$T/original.db") + 1"
echo "entrypoint: restored $(rows "$T/original.db") rows, ran the child, replicated its write"

# The database exists now: no restore, the child still runs.
sh "$ENTRY" sh -c "touch '$T/ran'" >"$T/entry2.log" 2>&1 ||
  { cat "$T/entry2.log"; fail "entrypoint with an existing database"; }
grep -q "exists, not restoring" "$T/entry2.log" || fail "existing database restored?"
[ -e "$T/ran" ] || fail "child did not run"

# A restore that fails stops everything: the child never runs.
rc=0
DB_PATH=$T/elsewhere.db sh "$ENTRY" touch "$T/ran-anyway" >"$T/entry3.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "entrypoint went on after a failed restore"
[ ! -e "$T/ran-anyway" ] || fail "child ran after a failed restore"

# sluice commands pass through.
[ "$(sh "$ENTRY" version)" = "$("$SLUICE" version)" ] || fail "entrypoint version"

# restore-on-startup.sh: same restore, no child.
sqlite3 "$DB" ".backup '$T/before-ros.db'"
rm -rf "$DATA"
mkdir -p "$DATA"
sh "$D/kubernetes/restore-on-startup.sh" >"$T/ros.log" 2>&1 ||
  { cat "$T/ros.log"; fail "restore-on-startup.sh"; }
assert_same_db "$T/before-ros.db" "$DB"
sh "$D/kubernetes/restore-on-startup.sh" >"$T/ros2.log" 2>&1 ||
  fail "restore-on-startup.sh with the database present"
grep -q "skipping restore" "$T/ros2.log" || fail "restore-on-startup.sh restored twice"
# An empty replica is not an error: the application creates the database.
printf 'dbs:\n  - path: %s/new.db\n    replicas:\n      - url: file://%s/empty\n' \
  "$T" "$T" >"$T/empty.yml"
SLUICE_CONFIG=$T/empty.yml sh "$D/kubernetes/restore-on-startup.sh" >"$T/ros3.log" 2>&1 ||
  { cat "$T/ros3.log"; fail "restore-on-startup.sh with an empty replica"; }
[ ! -e "$T/new.db" ] || fail "empty replica produced a database"
unset SLUICE_BIN SLUICE_CONFIG
echo "restore-on-startup.sh: restores once, empty replica ok"

# --- Dockerfile (static) ---------------------------------------------------
DF=$D/docker/Dockerfile
grep -q '^FROM debian:12 AS build' "$DF" || fail "Dockerfile: build stage"
[ "$(grep '^FROM ' "$DF" | tail -n1)" = "FROM debian:12-slim" ] ||
  fail "Dockerfile: runtime stage is not debian:12-slim"
runtime=$(awk '/^FROM debian:12-slim/ { r = 1 } r' "$DF")
# Every library the binary links, by its Debian package, is installed.
# (One dpkg -S for all of them: each search reads every package's list.)
libs=()
for so in $(objdump -p "$SLUICE" | awk '$1 == "NEEDED" { print $2 }'); do
  # libc, and the sanitizer runtimes (ASan, UBSan, TSan builds).
  case $so in libc.so.* | libm.so.* | libpthread.so.* | ld-linux* | libasan* | libubsan* | liblsan* | libtsan*) continue ;; esac
  libs+=("$so")
done
dpkg -S "${libs[@]/#/*/}" >"$T/dpkg-S" 2>/dev/null
for so in "${libs[@]}"; do
  pkg=$(grep -F "/$so" "$T/dpkg-S" | grep -E "/${so//./\\.}\$" | head -n1 | cut -d: -f1)
  [ -n "$pkg" ] || fail "no Debian package found for $so"
  grep -qw "$pkg" <<<"$runtime" || fail "Dockerfile runtime stage lacks $pkg ($so)"
done
for pkg in libuv1 libsqlite3-0 libcurl4 libssl3 libyaml-0-2 liblz4-1 libexpat1 \
  libjansson4 ca-certificates; do
  grep -qw "$pkg" <<<"$runtime" || fail "Dockerfile runtime stage lacks $pkg"
done
grep -q -- '-dev' <<<"$runtime" && fail "Dockerfile runtime stage installs -dev packages"
# The build stage has the -dev package of every pkg-config module.
build=$(awk '/^FROM debian:12-slim/ { exit } 1' "$DF")
for pkg in $(awk '/^BUILD="/,/"$/' "$SRCDIR/scripts/install-deps.sh" |
  tr -s ' "\\=' '\n' | grep -- '-dev$' | sort -u); do
  grep -qw -- "$pkg" <<<"$build" || fail "Dockerfile build stage lacks $pkg"
done
# COPY sources exist; the scripts it copies are executable.
while read -r src; do
  [ -e "$SRCDIR/$src" ] || fail "Dockerfile copies missing $src"
done < <(awk '$1 == "COPY" && $2 !~ /^--from/ { print $2 }' "$DF")
for f in deploy/docker/docker-entrypoint.sh deploy/kubernetes/restore-on-startup.sh; do
  [ -x "$SRCDIR/$f" ] || fail "$f is not executable"
  if git -C "$SRCDIR" ls-files --error-unmatch "$f" >/dev/null 2>&1; then
    [ "$(git -C "$SRCDIR" ls-files -s "$f" | cut -c1-6)" = 100755 ] ||
      fail "$f is not executable in git"
  fi
done
grep -q 'ln -sf sluice /usr/local/bin/litestream' "$DF" || fail "Dockerfile: litestream link"
grep -q '^ENTRYPOINT \["/usr/local/bin/docker-entrypoint.sh"\]' "$DF" ||
  fail "Dockerfile: ENTRYPOINT"
echo "Dockerfile: stages, runtime libraries, copies"

# --- YAML: Kubernetes, compose, configs ----------------------------------
# check_config NAME FILE: `config check` passes, except for backends not in
# this build yet (noted).
check_config() {
  local rc=0
  LITESTREAM_AZURE_ACCOUNT_KEY=$(printf placeholder | base64) \
    "$SLUICE" config check -config "$2" >"$T/cc.out" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    if grep '^error:' "$T/cc.out" | grep -qv "backend not available yet"; then
      cat "$T/cc.out"
      fail "config check $1"
    fi
    NOTES+=("$1: $(grep -o '[a-z0-9]* backend not available yet' "$T/cc.out" | sort -u | paste -sd, -)")
  fi
}
for f in "$D"/examples/*.yml; do
  check_config "examples/$(basename "$f")" "$f"
done
check_config docker/sluice.yml "$D/docker/sluice.yml"

if python3 -c 'import yaml' 2>/dev/null; then
  python3 - "$D" "$T/k8s-sluice.yml" <<'PY' || fail "Kubernetes/compose YAML"
import os, re, sys, yaml
d, out = sys.argv[1], sys.argv[2]
docs = {}
for f in sorted(os.listdir(d + "/kubernetes")):
    if f.endswith(".yaml"):
        for doc in yaml.safe_load_all(open(os.path.join(d, "kubernetes", f))):
            assert doc and "kind" in doc and "apiVersion" in doc, f
            docs[doc["kind"]] = doc
for k in ("ConfigMap", "Secret", "Service", "StatefulSet", "Kustomization"):
    assert k in docs, "no " + k
cm, sec, sts = docs["ConfigMap"], docs["Secret"], docs["StatefulSet"]
open(out, "w").write(cm["data"]["sluice.yml"])
cfg = yaml.safe_load(cm["data"]["sluice.yml"])
for v in sec["stringData"].values():
    assert v.startswith("REPLACE_WITH"), "Secret example holds a value: " + v
spec = sts["spec"]
assert spec["replicas"] == 1, "SQLite: one pod"
pod = spec["template"]["spec"]
ann = spec["template"]["metadata"]["annotations"]
assert ann["prometheus.io/scrape"] == "true"
assert ann["prometheus.io/path"] == "/metrics"
port = int(cfg["addr"].rsplit(":", 1)[1])
assert int(ann["prometheus.io/port"]) == port, "annotation port != addr"
inits = pod["initContainers"]
names = [c["name"] for c in inits]
assert names.index("restore") < names.index("sluice"), "restore must run first"
restore = inits[names.index("restore")]
assert "restore-on-startup.sh" in " ".join(restore["command"])
side = inits[names.index("sluice")]
assert side.get("restartPolicy") == "Always", "sluice: native sidecar"
assert side["args"][0] == "replicate"
assert side["ports"][0]["containerPort"] == port
assert side["livenessProbe"]["httpGet"]["path"] == "/metrics"
shutdown = int(re.match(r"(\d+)s$", cfg.get("shutdown-timeout", "30s"))[1])
assert pod["terminationGracePeriodSeconds"] > shutdown
vols = {v["name"] for v in pod["volumes"]} | {
    t["metadata"]["name"] for t in spec["volumeClaimTemplates"]}
for c in inits + pod["containers"]:
    for m in c.get("volumeMounts", []):
        assert m["name"] in vols, c["name"] + ": unknown volume " + m["name"]
    for e in c.get("envFrom", []):
        assert e["secretRef"]["name"] == sec["metadata"]["name"]
    assert any(m["mountPath"] == "/data" for m in c["volumeMounts"]), c["name"]
assert pod["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
kus = docs["Kustomization"]["resources"]
assert "secret.example.yaml" not in kus, "kustomization must not apply the example secret"
for r in kus:
    assert os.path.exists(os.path.join(d, "kubernetes", r)), r
# compose
c = yaml.safe_load(open(d + "/docker/docker-compose.yml"))
s = c["services"]
for name in ("minio", "bucket", "restore", "app", "sluice"):
    assert name in s, "compose: no service " + name
assert s["app"]["depends_on"]["restore"]["condition"] == "service_completed_successfully"
assert s["sluice"]["command"][0] == "replicate"
assert "restore-on-startup.sh" in s["restore"]["command"][0]
for svc in ("restore", "sluice"):
    assert "data:/data" in s[svc]["volumes"]
    env = s[svc]["environment"]
    assert "REPLACE_WITH" in env["AWS_SECRET_ACCESS_KEY"], "compose holds a secret"
assert os.path.exists(os.path.join(d, "docker", s["sluice"]["build"]["context"],
                                   s["sluice"]["build"]["dockerfile"]))
PY
  check_config kubernetes/configmap.yaml "$T/k8s-sluice.yml"
  echo "YAML: Kubernetes manifests and compose file consistent"
else
  NOTES+=("PyYAML missing: Kubernetes/compose YAML not checked")
fi
if command -v kubectl >/dev/null; then
  timeout 60 kubectl kustomize "$D/kubernetes" >"$T/kustomized.yaml" 2>"$T/kustomize.err" ||
    { cat "$T/kustomize.err"; fail "kubectl kustomize deploy/kubernetes"; }
fi

for n in "${NOTES[@]}"; do echo "note: $n"; done
echo PASS
