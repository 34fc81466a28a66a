#!/usr/bin/env python3
"""Many small databases for the e2e tests (tests/lib/many_dbs.sh).

  create DIR N WIDTH ROWS [wal|off]
      t<i, WIDTH digits>.db for i < N, each a table t(id, v) of ROWS rows
      ("tenant I row K"), in WAL mode or (off, the default: ten times faster
      to make, a -wal and -shm less per file) without a journal.
  compare SRC OUT N WIDTH [--rep REP] [--rows EXPR] [--gens EXPR] [--label L]
      every OUT/t<i>.db passes integrity_check and has SRC/t<i>.db's rows;
      --rows: that many rows (a Python expression of i); --gens: that many
      generations in REP/t<i>.db/generations.  Names the first ten that
      differ; exit 1 if any does.
"""
import os
import sqlite3
import sys


def create(d, n, width, rows, mode="off"):
    for i in range(n):
        c = sqlite3.connect(f"{d}/t{i:0{width}d}.db", isolation_level=None)
        c.execute(f"PRAGMA journal_mode={mode}")
        if mode == "off":
            c.execute("PRAGMA synchronous=off")
        c.execute("BEGIN")
        c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
        c.executemany("INSERT INTO t(v) VALUES (?)",
                      [(f"tenant {i} row {k}",) for k in range(rows)])
        c.execute("COMMIT")
        c.close()


def table(path):
    c = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        ok = c.execute("PRAGMA integrity_check").fetchone()[0]
        return ok, c.execute("SELECT id, v FROM t ORDER BY id").fetchall()
    finally:
        c.close()


def compare(src, out, n, width, rep=None, rows=None, gens=None, label=""):
    bad = []
    for i in range(n):
        f = f"t{i:0{width}d}.db"
        ok, got = table(f"{out}/{f}")
        _, want = table(f"{src}/{f}")
        why = []
        if ok != "ok":
            why.append(f"integrity {ok}")
        if got != want:
            why.append(f"{len(got)} rows of {len(want)}")
        if rows is not None and len(want) != eval(rows, {"i": i}):
            why.append(f"{len(want)} rows in the source, want {eval(rows, {'i': i})}")
        if gens is not None:
            g = len(os.listdir(f"{rep}/{f}/generations"))
            if g != eval(gens, {"i": i}):
                why.append(f"{g} generations, want {eval(gens, {'i': i})}")
        if why:
            bad.append(f"{f}: " + ", ".join(why))
    for b in bad[:10]:
        print(f"{label}{b}", file=sys.stderr)
    print(f"{label}{n - len(bad)} of {n} restored with integrity ok and every row"
          + (", generations as expected" if gens is not None else ""))
    return 1 if bad else 0


def main(argv):
    if argv[:1] == ["create"] and len(argv) in (5, 6):
        create(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), *argv[5:])
        return 0
    if argv[:1] == ["compare"] and len(argv) >= 5:
        opts = {}
        rest = argv[5:]
        while rest:
            if len(rest) < 2 or rest[0] not in ("--rep", "--rows", "--gens", "--label"):
                break
            opts[rest[0][2:]] = rest[1]
            rest = rest[2:]
        else:
            if "label" in opts:
                opts["label"] += ": "
            return compare(argv[1], argv[2], int(argv[3]), int(argv[4]), **opts)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
