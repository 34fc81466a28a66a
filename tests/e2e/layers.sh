#!/usr/bin/env bash
# The layering the build cannot see: libuv and curl multi are touched only
# by src/loop/ (their headers are system headers, so the per-layer include
# roots of CMakeLists.txt do not stop them), and loop/internal.h stays
# private to src/loop/.  Header order between the layers themselves is
# enforced by the build.
set -u
src="$SRCDIR/src"
bad=$(grep -rlE '#include <(uv|curl/curl)\.h>' "$src" | grep -v "^$src/loop/")
[ -z "$bad" ] || { echo "FAIL: libuv/curl included outside src/loop: $bad"; exit 1; }
bad=$(grep -rl '"loop/internal.h"' "$src" | grep -v "^$src/loop/")
[ -z "$bad" ] || { echo "FAIL: loop/internal.h included outside src/loop: $bad"; exit 1; }
echo "PASS: libuv and curl only in src/loop"
