#!/usr/bin/env python3
"""The point-in-time tests' writer (tests/tools/pitr_check.py checks).

usage: pitr_writer.py DB SECONDS [STOPFILE]
       pitr_writer.py DB create     (the database those commits start from)

Commits k = 1, 2, ... for SECONDS (or until STOPFILE exists) to DB (made
by the test: meta(k) and t(id, v) with 300-byte values), each setting
meta.k = k and changing a few of t's many pages; prints "k digest" after
each commit (0 first: the content before), digest being the sum of
sha1(id:v)[:8] over t's rows mod 2**64, kept up to date row by row.
While DB.slow exists, 5 commits a second.
"""
import hashlib, os, random, sqlite3, sys, time
if sys.argv[2] == "create":
    c = sqlite3.connect(sys.argv[1])
    c.execute("PRAGMA journal_mode=WAL")
    c.execute("CREATE TABLE meta(k INTEGER)")
    c.execute("INSERT INTO meta VALUES (0)")
    c.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    c.executemany("INSERT INTO t(v) VALUES (?)",
                  [(os.urandom(300),) for _ in range(3000)])
    c.commit()
    sys.exit(0)
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA busy_timeout=10000")
c.execute("PRAGMA wal_autocheckpoint=250")  # a new WAL index every ~1 MB
random.seed(12)
# The digest of a content: the sum of its rows' hashes, kept up to date
# row by row (the checker sums the rows it restored).
def rh(i, v):
    return int.from_bytes(hashlib.sha1(b"%d:" % i + v).digest()[:8], "big")
rows = dict(c.execute("SELECT id, v FROM t"))
dig = sum(rh(i, v) for i, v in rows.items()) % 2**64
print(0, "%016x" % dig, flush=True)
end, k = time.time() + float(sys.argv[2]), 0
stop = sys.argv[3] if len(sys.argv) > 3 else None
while time.time() < end and not (stop and os.path.exists(stop)):
    k += 1
    c.execute("BEGIN IMMEDIATE")
    c.execute("UPDATE meta SET k = ?", (k,))
    ids = list(rows) if k % 50 == 1 else ids
    # A few pages of many per commit: a page changed after a given point
    # of a WAL index was often not changed before it.
    for _ in range(3):
        i = random.choice(ids)
        if i not in rows:
            continue
        v = os.urandom(300)
        c.execute("UPDATE t SET v = ? WHERE id = ?", (v, i))
        dig -= rh(i, rows[i])
        rows[i] = v
        dig += rh(i, v)
    if k % 5 == 0:
        v = os.urandom(300)
        i = c.execute("INSERT INTO t(v) VALUES (?)", (v,)).lastrowid
        rows[i] = v
        dig += rh(i, v)
    if k % 11 == 0:
        i = random.choice(ids)
        if i in rows:
            c.execute("DELETE FROM t WHERE id = ?", (i,))
            dig -= rh(i, rows.pop(i))
    c.execute("COMMIT")
    dig %= 2**64
    print(k, "%016x" % dig, flush=True)
    time.sleep(0.2 if os.path.exists(sys.argv[1] + ".slow") else 0.002)
