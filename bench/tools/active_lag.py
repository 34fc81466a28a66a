#!/usr/bin/env python3
"""Commit -> replica lag for W writers, each committing every PERIOD s.

  active_lag.py DBDIR REPLICADIR W PERIOD DURATION NAMES...

NAMES are the writers' database file names (relative to DBDIR; their file
replica is REPLICADIR/<name>/generations/<gen>/wal/).  After each commit
the WAL's end is read from the wal-index header in the -shm (mxFrame, as
SQLite itself has it: 32 + mxFrame * (24 + page size)); a smaller end than
the last one is a WAL restart, which the replica names with the next index
(the replica's highest index at the start is the current WAL's).  An
inotify watch on each wal/ directory sees each segment object appear (the
file backend renames it into place); the segment's name gives its index
and start offset, and its LZ4 frame (parsed here: block headers and
sequence lengths, no output) its length.  A commit is replicated when a
segment of its index ends at or after the commit's end; its lag is the
time from the commit's return to that segment's rename event.  Prints
p50/p90/p99/max and counts.
"""
import ctypes, ctypes.util, glob, os, random, select, sqlite3, struct, sys, time

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
IN_MOVED_TO, IN_CREATE, IN_NONBLOCK = 0x80, 0x100, 0o4000


def lz4_frame_len(data):
    """Decompressed length of an LZ4 frame (sluice's: no content size)."""
    if len(data) < 7 or data[:4] != b"\x04\x22\x4d\x18":
        raise ValueError("not an LZ4 frame")
    flg = data[4]
    p = 6 + (8 if flg & 0x08 else 0) + 1  # FLG BD [size] HC
    bchk = 4 if flg & 0x10 else 0
    total = 0
    while True:
        (bs,) = struct.unpack_from("<I", data, p)
        p += 4
        if bs == 0:
            return total
        n = bs & 0x7FFFFFFF
        if bs & 0x80000000:
            total += n
        else:
            q, end = p, p + n
            while q < end:
                tok = data[q]
                q += 1
                lit = tok >> 4
                if lit == 15:
                    while True:
                        b = data[q]
                        q += 1
                        lit += b
                        if b != 255:
                            break
                q += lit
                total += lit
                if q >= end:
                    break
                q += 2
                m = tok & 15
                if m == 15:
                    while True:
                        b = data[q]
                        q += 1
                        m += b
                        if b != 255:
                            break
                total += m + 4
        p += n + bchk


def main():
    dbdir, repdir, w, period, duration = sys.argv[1:6]
    names = sys.argv[6:]
    w, period, duration = int(w), float(period), float(duration)
    names = names[:w]
    conns, walp, base, wdirs = [], [], [], []
    for nm in names:
        c = sqlite3.connect(os.path.join(dbdir, nm), isolation_level=None)
        c.execute("PRAGMA busy_timeout=5000")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA wal_autocheckpoint=0")
        conns.append(c)
        walp.append(os.path.join(dbdir, nm) + "-wal")
        gens = glob.glob(os.path.join(repdir, nm, "generations", "*", "wal"))
        if len(gens) != 1:
            sys.exit("%s: expected one generation in the replica, found %d" % (nm, len(gens)))
        wdirs.append(gens[0])
    fd = libc.inotify_init1(IN_NONBLOCK)
    if fd < 0:
        sys.exit("inotify_init1 failed")
    wd2i = {}
    for i, d in enumerate(wdirs):
        wd = libc.inotify_add_watch(fd, d.encode(), IN_MOVED_TO | IN_CREATE)
        if wd < 0:
            sys.exit("inotify_add_watch %s: errno %d" % (d, ctypes.get_errno()))
        wd2i[wd] = i
    for d in wdirs:
        idx = [int(os.path.basename(f)[:8], 16) for f in glob.glob(d + "/*.wal.lz4")]
        base.append(max(idx) if idx else 0)
    shm = [os.open(p[:-4] + "-shm", os.O_RDONLY) for p in walp]
    fsz = [24 + c.execute("PRAGMA page_size").fetchone()[0] for c in conns]
    life = [0] * len(names)  # WAL restarts seen since the start
    last_end = [0] * len(names)

    def wal_end(i):
        (mx,) = struct.unpack("<I", os.pread(shm[i], 4, 16))
        return 32 + mx * fsz[i]

    pending = [[] for _ in names]  # (index, end, t_commit)
    broken = [False] * len(names)
    lags, rows = [], 0
    buf = b""
    start = time.monotonic()
    nxt = [start + i * period / len(names) for i in range(len(names))]
    stop = start + duration
    payload = lambda: os.urandom(60).hex()

    def on_events(now):
        nonlocal buf
        try:
            buf += os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        p = 0
        while p + 16 <= len(buf):
            wd, mask, cookie, ln = struct.unpack_from("iIII", buf, p)
            if p + 16 + ln > len(buf):
                break
            name = buf[p + 16 : p + 16 + ln].rstrip(b"\0").decode()
            p += 16 + ln
            i = wd2i.get(wd)
            if i is None or not name.endswith(".wal.lz4") or broken[i]:
                continue
            idx, off = int(name[:8], 16), int(name[9:17], 16)
            if not any(ix <= idx for ix, _, _ in pending[i]):
                continue
            try:
                with open(os.path.join(wdirs[i], name), "rb") as f:
                    end = off + lz4_frame_len(f.read())
            except (OSError, ValueError, IndexError, struct.error) as e:
                print("warning: %s/%s: %s" % (wdirs[i], name, e), file=sys.stderr)
                continue
            keep = []
            for ix, e_c, t_c in pending[i]:
                if ix < idx or (ix == idx and e_c <= end):
                    lags.append(now - t_c)
                else:
                    keep.append((ix, e_c, t_c))
            pending[i] = keep
        buf = buf[p:]

    while True:
        now = time.monotonic()
        if now >= stop:
            break
        i = min(range(len(names)), key=nxt.__getitem__)
        wait = nxt[i] - now
        if wait > 0:
            r, _, _ = select.select([fd], [], [], wait)
            if r:
                on_events(time.monotonic())
            continue
        conns[i].execute("INSERT INTO t(v) VALUES (?)", (payload(),))
        t = time.monotonic()
        rows += 1
        e = wal_end(i)
        if e < last_end[i]:
            life[i] += 1
        last_end[i] = e
        pending[i].append((base[i] + life[i], e, t))
        nxt[i] += period
        on_events(time.monotonic())
    # Drain: what was committed last gets 5 s to appear.
    end = time.monotonic() + 5
    while time.monotonic() < end and any(pending[i] and not broken[i] for i in range(len(names))):
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            on_events(time.monotonic())
    missing = sum(len(pending[i]) for i in range(len(names)) if not broken[i])
    lags.sort()
    q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))] * 1000 if lags else float("nan")
    print("commits=%d measured=%d missing_after_5s=%d wal_restarts=%d" % (rows, len(lags), missing, sum(life)))
    print("lag_ms p50=%.1f p90=%.1f p99=%.1f max=%.1f" % (q(0.5), q(0.9), q(0.99), lags[-1] * 1000 if lags else float("nan")))


if __name__ == "__main__":
    main()
