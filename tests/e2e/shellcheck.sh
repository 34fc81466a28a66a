#!/usr/bin/env bash
# Every shell script of the project under shellcheck: deploy/ and scripts/
# strict, the tests (following what they source) at warning level.  Its
# own test (it was part of e2e/deploy, whose stop it held up for minutes
# on a loaded machine), so CTest runs it beside the others; the files are
# the same in every build, so the ASan suite leaves it out (CMakeLists.txt).
# SC2010 (ls | grep) is allowed in the tests: what they list are sluice's
# object names and version files, of a fixed form.
source "$SRCDIR/tests/lib/common.sh"
command -v shellcheck >/dev/null || skip "shellcheck not installed"
cd "$SRCDIR" || fail "no $SRCDIR"
mapfile -t own < <(find deploy scripts -name '*.sh' | sort)
shellcheck "${own[@]}" || fail "shellcheck: deploy/ and scripts/"
mapfile -t tests < <(find tests -name '*.sh' -not -path '*/node_modules/*' | sort)
# (Eight files a process, one process per CPU: about 40 s of CPU in all.)
printf '%s\0' "${tests[@]}" |
  xargs -0 -n 8 -P "$(nproc 2>/dev/null || echo 2)" \
    shellcheck -x -P SCRIPTDIR -S warning -e SC2010 -f gcc ||
  fail "shellcheck: warnings in the test scripts (above)"
echo "shellcheck: ${#own[@]} scripts in deploy/ and scripts/, ${#tests[@]} test scripts"
echo PASS
