#!/usr/bin/env python3
"""Writes a SQLite database of text rows (words, e-mail addresses, small
JSON-like payloads with hex ids): pages that compress like an application's
rather than like random bytes.  Usage: textdb.py PATH MEGABYTES"""
import os, random, sqlite3, sys

path, mb = sys.argv[1], int(sys.argv[2])
random.seed(1)
db = sqlite3.connect(path)
db.execute("PRAGMA journal_mode=WAL")
db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, name TEXT, "
           "email TEXT, payload TEXT, n REAL)")
words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf",
         "hotel", "india", "juliet", "kilo", "lima", "mike", "november",
         "oscar", "papa"]
while os.path.getsize(path) < mb * 1e6:
    rows = []
    for _ in range(10000):
        rows.append((" ".join(random.choice(words) for _ in range(3)),
                     "user%d@example.com" % random.randint(0, 10**7),
                     '{"k":%d,"v":"%s","hex":"%s"}' % (
                         random.randint(0, 10**6), random.choice(words),
                         "".join(random.choices("0123456789abcdef", k=32))),
                     random.random()))
    db.executemany("INSERT INTO t(name, email, payload, n) VALUES (?,?,?,?)",
                   rows)
    db.commit()
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
