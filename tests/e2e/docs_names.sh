#!/usr/bin/env bash
# docs/ARCHITECTURE.md stays in step with the code: every function it
# names as `name()` is defined in src/, and every file it names exists.
set -u
doc="$SRCDIR/docs/ARCHITECTURE.md"
missing=0
for f in $(grep -o '`[a-z_][a-z0-9_]*()`' "$doc" | tr -d '`()' | sort -u); do
  if ! grep -rqE "^[a-z].*[ *]$f\(" "$SRCDIR/src"; then
    echo "FAIL: ARCHITECTURE.md names $f(), which src/ does not define"
    missing=1
  fi
done
for p in $(grep -oE '`(base|format|config|loop|backends|core|daemon|cli)/[a-z_0-9]+\.[ch]`' "$doc" | tr -d '`' | sort -u); do
  [ -f "$SRCDIR/src/$p" ] || { echo "FAIL: ARCHITECTURE.md names src/$p, which does not exist"; missing=1; }
done
[ "$missing" = 0 ] || exit 1
echo "PASS: every function and file docs/ARCHITECTURE.md names exists"
