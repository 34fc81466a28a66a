# shellcheck shell=bash
# A real OpenSSH server on 127.0.0.1 for the SFTP tests, with its own host
# key, config, port and authorized key; no system file is touched except
# for the password test user (see sshd_password_user).  Source after
# common.sh.
#
#   sshd_start          starts sshd (skips the test with 77 when it cannot)
#   sshd_stop           stops it (kill by PID)
#   sshd_restart        stops and starts it again on the same port
# Sets SSHD_DIR, SSHD_PORT, SSHD_PID, SSHD_KEY (the user's private key) and
# SSHD_KNOWN_HOSTS (a known_hosts file holding the server's key).

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
SSHD_DIR=$T/sshd
SSHD_PORT=
SSHD_PID=
SSHD_PASSWORD_USER=sluice-sftp
SSHD_PASSWORD=sluice-Test-Pw-7391

sshd_setup() {
  [ -x "$SSHD_BIN" ] || skip "no $SSHD_BIN (Debian package openssh-server)"
  command -v ssh-keygen >/dev/null || skip "no ssh-keygen (openssh-client)"
  mkdir -p "$SSHD_DIR"
  ssh-keygen -q -t ed25519 -N '' -C sluice-test-host -f "$SSHD_DIR/host_key" ||
    skip "ssh-keygen failed"
  ssh-keygen -q -t ed25519 -N '' -C sluice-test-user -f "$SSHD_DIR/user_key"
  cp "$SSHD_DIR/user_key.pub" "$SSHD_DIR/authorized_keys"
  # A second host key of another type (SSHD_ECDSA=1): the client must ask
  # for the type its known_hosts holds.
  if [ -n "${SSHD_ECDSA:-}" ]; then
    ssh-keygen -q -t ecdsa -N '' -f "$SSHD_DIR/host_key_ecdsa"
  fi
  SSHD_KEY=$SSHD_DIR/user_key
  mkdir -p /run/sshd 2>/dev/null
}

sshd_write_config() {
  cat >"$SSHD_DIR/sshd_config" <<CFG
Port $SSHD_PORT
ListenAddress 127.0.0.1
HostKey $SSHD_DIR/host_key
${SSHD_ECDSA:+HostKey $SSHD_DIR/host_key_ecdsa}
PidFile $SSHD_DIR/sshd.pid
AuthorizedKeysFile $SSHD_DIR/authorized_keys
PasswordAuthentication ${SSHD_PASSWORD_AUTH:-no}
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
MaxStartups 50
Subsystem sftp internal-sftp
CFG
  printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" \
    "$(cut -d' ' -f1,2 "$SSHD_DIR/host_key.pub")" >"$SSHD_DIR/known_hosts"
  SSHD_KNOWN_HOSTS=$SSHD_DIR/known_hosts
}

sshd_answers() {
  # The banner: sshd accepted the connection.
  timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$SSHD_PORT && head -c 4 <&3" 2>/dev/null |
    grep -q SSH-
}

sshd_launch() {
  "$SSHD_BIN" -f "$SSHD_DIR/sshd_config" -D -e 2>>"$SSHD_DIR/sshd.log" &
  SSHD_PID=$!
  PIDS+=("$SSHD_PID")
  wait_until 10 sshd_answers
}

sshd_start() {
  sshd_setup
  local _
  for _ in 1 2 3 4 5; do
    SSHD_PORT=$(( 20000 + RANDOM % 20000 ))
    sshd_write_config
    if sshd_launch; then return 0; fi
    kill "$SSHD_PID" 2>/dev/null
    wait "$SSHD_PID" 2>/dev/null
  done
  tail -5 "$SSHD_DIR/sshd.log" >&2
  skip "sshd could not be started on 127.0.0.1"
}

# The PIDs below PID (children first), by parent PID.
descendants() {
  local c
  for c in $(ps -o pid= --ppid "$1"); do
    descendants "$c"
    echo "$c"
  done
}

# sshd_stop [SIGNAL]: stops sshd and the processes serving its open
# connections (they outlive the listener otherwise).
sshd_stop() {
  local sig=${1:-TERM} p
  [ -n "$SSHD_PID" ] || return 0
  for p in $(descendants "$SSHD_PID"); do kill "-$sig" "$p" 2>/dev/null; done
  kill "-$sig" "$SSHD_PID" 2>/dev/null
  wait "$SSHD_PID" 2>/dev/null
  SSHD_PID=
}

sshd_restart() {
  sshd_stop "${1:-TERM}"
  sshd_launch || fail "sshd did not come back on port $SSHD_PORT"
}

# sshd_password_user DIR: a local user with a password, owning DIR, for the
# password test (useradd/chpasswd: needs root).  Returns 1 when impossible.
sshd_password_user() {
  [ "$(id -u)" = 0 ] || return 1
  command -v useradd >/dev/null || return 1
  (
    flock 9
    id "$SSHD_PASSWORD_USER" >/dev/null 2>&1 ||
      useradd -M -d /nonexistent -s /bin/sh "$SSHD_PASSWORD_USER" || exit 1
    echo "$SSHD_PASSWORD_USER:$SSHD_PASSWORD" | chpasswd || exit 1
  ) 9>/tmp/sluice-sftp-user.lock || return 1
  mkdir -p "$1" && chown "$SSHD_PASSWORD_USER" "$1"
}

# sftp_cli CMDS...: runs the OpenSSH sftp client with the user key (batch).
sftp_cli() {
  printf '%s\n' "$@" | sftp -q -b - -i "$SSHD_KEY" -P "$SSHD_PORT" \
    -o UserKnownHostsFile="$SSHD_KNOWN_HOSTS" -o StrictHostKeyChecking=yes \
    -o BatchMode=yes root@127.0.0.1
}
