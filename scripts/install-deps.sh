#!/bin/sh
# Install what sluice needs on Debian 12, skipping packages already present.
#   scripts/install-deps.sh          build + run dependencies
#   scripts/install-deps.sh --test   also what the test suite needs
# Runs as root, or through sudo when it is available.
set -eu

BUILD="cmake make gcc pkg-config libuv1-dev libsqlite3-dev sqlite3 \
libcurl4-openssl-dev libssl-dev libyaml-dev liblz4-dev lz4 libexpat1-dev \
libjansson-dev libssh2-1-dev ca-certificates"
TEST="awscli nodejs npm shellcheck systemd prometheus iproute2 python3 curl \
python3-yaml openssh-server openssh-client clang libclang-rt-14-dev age gdb"

pkgs=$BUILD
[ "${1:-}" = "--test" ] && pkgs="$BUILD $TEST"

missing=""
for p in $pkgs; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing="$missing $p"
  fi
done
# A node/npm that did not come from Debian's packages (nvm, nodesource) is fine.
case " $missing " in *" nodejs "*) command -v node >/dev/null && missing=$(echo "$missing" | sed 's/ nodejs//');; esac
case " $missing " in *" npm "*) command -v npm >/dev/null && missing=$(echo "$missing" | sed 's/ npm//');; esac
[ -z "$missing" ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "installing:$missing"
$SUDO apt-get update -qq
# shellcheck disable=SC2086 # one word per package
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
