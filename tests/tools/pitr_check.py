#!/usr/bin/env python3
"""Point-in-time restores checked against the source's commits.

usage: pitr_check.py SLUICE DIR CAP REPLICA...

DIR/commits: "k digest" per commit of the source (k = the value of
meta.k after commit k; digest = the sum of sha1(id:v)[:8] over the rows of
t, mod 2**64).  DIR/times.REPLICA: "ns key" per object of that replica.
For every object time at or after its first snapshot (at most CAP per
replica, the snapshot times always), plus a time after everything,
`sluice restore -config DIR/sluice.yml -replica REPLICA -timestamp T`
must give a commit of the source: integrity_check ok, the content of that
commit, commits never going back as T goes forward, the last commit last
(any commit with PITR_LATEST_ANY set: the replica's daemon was killed);
and each replica must hold one generation.  Databases already restored
(latest state, while the writer ran) in DIR/live/*.db must each be a
commit of the source too.  Exits 1 if any is not so.
"""
import datetime, glob, hashlib, os, random, sqlite3, subprocess, sys
sluice, T, cap = sys.argv[1], sys.argv[2], int(sys.argv[3])
commits = {}
for line in open(T + "/commits"):
    k, d = line.split()
    commits[int(k)] = d


def check(path):
    """(commit, None) if path holds a commit of the source, else (k, why)."""
    c = sqlite3.connect(path)
    ic = c.execute("PRAGMA integrity_check").fetchone()[0]
    try:
        k = c.execute("SELECT k FROM meta").fetchone()[0]
        d = "%016x" % (sum(
            int.from_bytes(hashlib.sha1(b"%d:" % i + v).digest()[:8], "big")
            for i, v in c.execute("SELECT id, v FROM t")) % 2**64)
    except sqlite3.Error as e:
        k, d = None, str(e)
    c.close()
    if ic != "ok":
        return k, "integrity_check: " + ic.replace("\n", "; ")[:200]
    if k not in commits:
        return k, "commit %r never made" % k
    if commits[k] != d:
        return k, "content is not the source's at commit %d" % k
    return k, None


bad = 0
total = 0
for name in sys.argv[4:]:
    objs = [l.split() for l in open("%s/times.%s" % (T, name))]
    gens = {k.split("generations/")[1].split("/")[0] for _, k in objs}
    if len(gens) != 1:
        print("%s: %d generations, expected 1" % (name, len(gens)))
        bad += 1
    snaps = sorted(int(t) for t, k in objs if "/snapshots/" in k)
    times = sorted({int(t) for t, _ in objs if int(t) >= snaps[0]})
    if len(times) > cap:
        keep = set(snaps)
        rest = [t for t in times if t not in keep]
        random.seed(5)
        keep |= set(random.sample(rest, max(0, cap - len(keep))))
        times = sorted(keep)
    last_k, n_bad, n_err = -1, 0, 0
    for i, ns in enumerate(times + [None]):
        if ns is None:
            ts = "2099-01-01T00:00:00Z"  # the latest state
        else:
            s, frac = divmod(ns, 10**9)
            ts = datetime.datetime.fromtimestamp(s, datetime.timezone.utc) \
                .strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % frac
        out = "%s/r-%s-%d.db" % (T, name, i)
        p = subprocess.run([sluice, "restore", "-config", T + "/sluice.yml",
                            "-replica", name, "-timestamp", ts, "-o", out,
                            T + "/app.db"], capture_output=True, text=True)
        total += 1
        if p.returncode:
            n_err += 1
            print("%s at %s: restore failed: %s" % (name, ts, p.stderr.strip()[-300:]))
            continue
        k, why = check(out)
        for f in (out, out + "-wal", out + "-shm"):
            if os.path.exists(f):
                os.unlink(f)
        if not why and k < last_k:
            why = "commit %d after commit %d at an earlier time" % (k, last_k)
        if not why and ns is None and k != max(commits) and \
                not os.environ.get("PITR_LATEST_ANY"):
            why = "latest state is commit %d, not %d" % (k, max(commits))
        if why:
            n_bad += 1
            print("%s at %s: %s" % (name, ts, why))
        else:
            last_k = k
    print("%s: %d restores (%d snapshot times), %d inconsistent, %d failed"
          % (name, len(times) + 1, len(snaps), n_bad, n_err))
    bad += n_bad + n_err
live = sorted(glob.glob(T + "/live/*.db"))
n_live = 0
if os.path.exists(T + "/live.err") and os.path.getsize(T + "/live.err"):
    print("live restores failed:\n" + open(T + "/live.err").read()[-2000:])
    bad += 1
for f in live:
    k, why = check(f)
    if why:
        n_live += 1
        print("live restore %s: %s" % (os.path.basename(f), why))
if live:
    print("live: %d latest-state restores while writing, %d inconsistent"
          % (len(live), n_live))
    total += len(live)
    bad += n_live
print("total: %d restores, %d commits" % (total, len(commits) - 1))
sys.exit(1 if bad else 0)
