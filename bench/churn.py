#!/usr/bin/env python3
"""Helpers for bench/churn.sh.

  churn.py create DIR PREFIX N ROWS          N databases at once
  churn.py churn DIR N ROWS SECONDS          creates new-*.db and deletes
                                             old-*.db, N each, spread evenly
  churn.py verify SRCDIR OUTDIR PREFIX       every PREFIX*.db under SRCDIR
                                             equals OUTDIR's (rows, schema,
                                             integrity_check); prints counts
"""
import os
import sqlite3
import sys
import time


def make(path, rows):
    c = sqlite3.connect(path, timeout=10)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("PRAGMA synchronous=NORMAL")  # the load, not fsync, is measured
    c.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v BLOB)")
    c.executemany("INSERT INTO t(v) VALUES (randomblob(?))",
                  [(200,)] * rows)
    c.commit()
    c.close()


def remove(path):
    for s in ("", "-wal", "-shm"):
        try:
            os.unlink(path + s)
        except FileNotFoundError:
            pass


def main():
    cmd = sys.argv[1]
    if cmd == "create":
        d, prefix, n, rows = sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
        for i in range(n):
            make(os.path.join(d, "%s-%05d.db" % (prefix, i)), rows)
    elif cmd == "churn":
        d, n, rows, secs = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
        t0 = time.monotonic()
        for i in range(n):
            due = t0 + secs * i / n
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            make(os.path.join(d, "new-%05d.db" % i), rows)
            remove(os.path.join(d, "old-%05d.db" % i))
        print("churn: %d created and %d deleted in %.1f s" %
              (n, n, time.monotonic() - t0))
    elif cmd == "verify":
        src, out, prefix = sys.argv[2], sys.argv[3], sys.argv[4]
        ok = bad = 0
        for name in sorted(os.listdir(src)):
            if not (name.startswith(prefix) and name.endswith(".db")):
                continue
            a = sqlite3.connect(os.path.join(src, name), timeout=10)
            p = os.path.join(out, name)
            if not os.path.exists(p):
                print("missing: " + p)
                bad += 1
                continue
            b = sqlite3.connect("file:%s?mode=ro" % p, uri=True)
            ic = b.execute("PRAGMA integrity_check").fetchone()[0]
            ra = a.execute("SELECT id, v FROM t ORDER BY id").fetchall()
            rb = b.execute("SELECT id, v FROM t ORDER BY id").fetchall()
            if ic != "ok" or ra != rb:
                print("differs: %s (integrity %s, %d vs %d rows)" % (name, ic, len(ra), len(rb)))
                bad += 1
            else:
                ok += 1
            a.close()
            b.close()
        print("verify: %d same, %d bad" % (ok, bad))
        sys.exit(1 if bad else 0)


main()
