/*
 * Restore through its API, against replicas built here from real SQLite
 * WALs: multi-index replay, the choice of generation and snapshot, large
 * snapshots fetched as ranges or (backend without ranged GETs) through a
 * temporary file, and failures that must name the object and leave
 * nothing behind.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "format/lz4frame.h"
#include "core/restore.h"
#include "base/util.h"
#include "format/wal.h"
#include "loop/loop.h"
#include "t.h"

#define GEN "00000000000000aa"
#define GEN2 "00000000000000bb"

static char g_dir[] = "/tmp/sluice-restore.XXXXXX";
static char g_err[1024];

static struct backend *open_backend(const char *root, int caps_mask) {
  static struct backend_ops norange;
  struct replica_config rc = {0};
  rc.type = "file";
  rc.name = "file";
  rc.path = (char *)root;
  if (caps_mask == -1)
    return backend_open(&rc, g_err, sizeof(g_err));
  /* The file backend pretending it cannot do ranged GETs. */
  norange = backend_file;
  norange.caps &= (unsigned)caps_mask;
  struct backend *b = xcalloc(1, sizeof(*b));
  b->ops = &norange;
  b->name = xstrdup("norange");
  b->priv = xcalloc(1, norange.priv_size);
  if (norange.open(b, &rc, g_err, sizeof(g_err)))
    return NULL;
  return b;
}

static void exec(sqlite3 *db, const char *sql) {
  char *e = NULL;
  if (sqlite3_exec(db, sql, NULL, NULL, &e) != SQLITE_OK) {
    fprintf(stderr, "sql: %s: %s\n", sql, e);
    exit(1);
  }
}

/* Objects written with 64 KiB LZ4 blocks instead of sluice's 4 MiB, so
 * the decoder hands a restore WAL frames split between two pieces. */
static int g_small_blocks;

static void put_lz4(struct backend *b, const char *key, const uint8_t *p,
                    size_t n, int64_t mtime_sec) {
  struct buf c;
  buf_init(&c, 0);
  if (g_small_blocks) {
    LZ4F_preferences_t pr;
    memset(&pr, 0, sizeof(pr));
    pr.frameInfo.blockSizeID = LZ4F_max64KB;
    pr.frameInfo.blockMode = LZ4F_blockIndependent;
    pr.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled;
    size_t cap = LZ4F_compressFrameBound(n, &pr);
    buf_reserve(&c, cap);
    size_t r = LZ4F_compressFrame(c.data, cap, p, n, &pr);
    if (LZ4F_isError(r)) {
      fprintf(stderr, "lz4: %s\n", LZ4F_getErrorName(r));
      exit(1);
    }
    c.len = r;
  } else {
    lz4_compress(p, n, &c);
  }
  struct payload pl = {c.data, -1, 0, (int64_t)c.len};
  if (backend_put_sync(b, key, &pl, g_err, sizeof(g_err)))
    fprintf(stderr, "put %s: %s\n", key, g_err);
  buf_destroy(&c);
  char *path = xasprintf("%s/%s", b->desc + strlen("file://"), key);
  struct timeval tv[2] = {{mtime_sec, 0}, {mtime_sec, 0}};
  utimes(path, tv);
  free(path);
}

static void read_file(const char *path, struct buf *out) {
  if (file_read_all(path, 0, out)) {
    fprintf(stderr, "cannot read %s\n", path);
    exit(1);
  }
}

/* A digest of t's rows, to compare databases.  Read-write, so that the
 * close removes the -wal and -shm it makes. */
static char *digest(const char *path) {
  sqlite3 *db;
  sqlite3_stmt *st;
  char *out = NULL;
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
      sqlite3_prepare_v2(db,
                         "SELECT count(*), total(id), total(length(v)), "
                         "(SELECT group_concat(substr(v, 1, 8)) FROM t), "
                         "(SELECT integrity_check FROM pragma_integrity_check)"
                         " FROM t",
                         -1, &st, NULL) == SQLITE_OK) {
    if (sqlite3_step(st) == SQLITE_ROW)
      out =
          xasprintf("%lld %.0f %.0f %s %s", sqlite3_column_int64(st, 0),
                    sqlite3_column_double(st, 1), sqlite3_column_double(st, 2),
                    (const char *)sqlite3_column_text(st, 3),
                    (const char *)sqlite3_column_text(st, 4));
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out ? out : xstrdup("(none)");
}

/*
 * Builds generation `gen` in backend b from a real database:
 *   snapshot 0 (after `big` MiB of random blobs), index 0 with two segments
 *   (two transactions), index 1 with one segment.  Object times start at
 *   t0 and advance one second per object.  Writes the expected digests of
 *   the final state and of the state after index 0's first segment.
 */
struct built {
  char *final_digest;
  char *seg1_digest;
  int64_t len0a; /* decompressed size of segment 0/0 */
};

static void build(struct backend *b, const char *gen, const char *dbdir,
                  int big_mib, int64_t t0, struct built *out) {
  mkdir_p(dbdir, 0700);
  char *path = xasprintf("%s/src.db", dbdir);
  char *walp = xasprintf("%s/src.db-wal", dbdir);
  char *copy = xasprintf("%s/copy.db", dbdir);
  sqlite3 *db;
  sqlite3_open(path, &db);
  exec(db, "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
           "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB)");
  for (int i = 0; i < big_mib; i++)
    exec(db, "INSERT INTO t(k, v) VALUES (0, randomblob(1048576))");
  exec(db, "INSERT INTO t(k, v) SELECT 1, hex(randomblob(100)) FROM "
           "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
           "WHERE x<50) SELECT x FROM c)");
  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  struct buf f;
  read_file(path, &f);
  char *key = key_snapshot(gen, 0);
  put_lz4(b, key, f.data, f.len, t0);
  free(key);
  buf_destroy(&f);

  /* Index 0: two transactions, two segments. */
  exec(db, "INSERT INTO t(k, v) SELECT 2, hex(randomblob(200)) FROM "
           "(WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c "
           "WHERE x<40) SELECT x FROM c)");
  struct buf w1, w2;
  read_file(walp, &w1);
  out->len0a = (int64_t)w1.len;
  /* The state after segment 0/0: copy db + wal aside and read it. */
  {
    struct buf d;
    read_file(path, &d);
    file_write_atomic(copy, d.data, d.len, 0600);
    char *cw = xasprintf("%s-wal", copy);
    file_write_atomic(cw, w1.data, w1.len, 0600);
    free(cw);
    buf_destroy(&d);
    out->seg1_digest = digest(copy);
  }
  exec(db, "UPDATE t SET v = 'updated' WHERE id % 7 = 0 AND k = 1;"
           "DELETE FROM t WHERE id % 5 = 0 AND k = 2");
  read_file(walp, &w2);
  key = key_wal_segment(gen, 0, 0);
  put_lz4(b, key, w1.data, w1.len, t0 + 1);
  free(key);
  key = key_wal_segment(gen, 0, (int64_t)w1.len);
  put_lz4(b, key, w2.data + w1.len, w2.len - w1.len, t0 + 2);
  free(key);
  buf_destroy(&w1);
  buf_destroy(&w2);

  /* Index 1: after a WAL restart. */
  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  exec(db, "INSERT INTO t(k, v) VALUES (3, 'last')");
  read_file(walp, &w1);
  key = key_wal_segment(gen, 1, 0);
  put_lz4(b, key, w1.data, w1.len, t0 + 3);
  free(key);
  buf_destroy(&w1);
  sqlite3_close(db);
  out->final_digest = digest(path);
  free(path);
  free(walp);
  free(copy);
}

static void built_destroy(struct built *b) {
  free(b->final_digest);
  free(b->seg1_digest);
}

/* Files in dir other than the expected one. */
static int stray_files(const char *dir, const char *expected) {
  DIR *d = opendir(dir);
  if (!d)
    return 0;
  struct dirent *de;
  int n = 0;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
        (expected && !strcmp(de->d_name, expected)))
      continue;
    fprintf(stderr, "stray file: %s/%s\n", dir, de->d_name);
    n++;
  }
  closedir(d);
  return n;
}

/* Leftovers of a restore in dir: *.tmp*, -wal, -shm. */
static int tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *de;
  int n = 0;
  while (d && (de = readdir(d)))
    if (strstr(de->d_name, ".tmp") || str_has_suffix(de->d_name, "-wal") ||
        str_has_suffix(de->d_name, "-shm")) {
      fprintf(stderr, "leftover: %s/%s\n", dir, de->d_name);
      n++;
    }
  if (d)
    closedir(d);
  return n;
}

static int restore(struct backend *b, const char *gen,
                   const struct restore_opts *o, const char *out) {
  return restore_run_sync(b, gen, o, out, g_err, sizeof(g_err));
}

static struct backend *g_b;
static struct built g_built;

TEST(restores_latest_and_point_in_time) {
  struct restore_opts o = {.parallelism = 8};
  char *outdir = xasprintf("%s/out1", g_dir);
  char *out = xasprintf("%s/sub/dir/db", outdir);
  CHECK_INT(restore(g_b, GEN, &o, out), 0);
  char *d = digest(out);
  CHECK_STR(d, g_built.final_digest);
  free(d);
  struct stat st;
  CHECK_INT(stat(out, &st), 0);
  CHECK_INT(st.st_mode & 0777, 0600);
  char *sub = xasprintf("%s/sub/dir", outdir);
  CHECK_INT(stray_files(sub, "db"), 0);
  free(sub);

  /* Existing output: refused, untouched. */
  CHECK_INT(restore(g_b, GEN, &o, out), ERR_EXISTS);
  char *want = xasprintf("restore: cannot restore, output path already "
                         "exists: %s",
                         out);
  CHECK_STR(g_err, want);
  free(want);

  /* -index 0: only index 0.  -timestamp at the first segment: state after
   * that segment. */
  char *out2 = xasprintf("%s/ts.db", outdir);
  o.has_timestamp = 1;
  o.timestamp_ns = (2000000000LL + 1) * NS_PER_SEC;
  CHECK_INT(restore(g_b, GEN, &o, out2), 0);
  d = digest(out2);
  CHECK_STR(d, g_built.seg1_digest);
  free(d);
  unlink(out2);
  /* Parallelism 1 gives the same. */
  o.has_timestamp = 0;
  o.parallelism = 1;
  CHECK_INT(restore(g_b, GEN, &o, out2), 0);
  d = digest(out2);
  CHECK_STR(d, g_built.final_digest);
  free(d);
  free(out2);
  free(out);
  free(outdir);
}

TEST(choose_generation) {
  struct restore_opts o = {.parallelism = 8};
  struct restore_target t;
  struct backend *bs[] = {g_b};
  CHECK_INT(restore_choose_sync(bs, 1, &o, &t, g_err, sizeof(g_err)), 0);
  CHECK_STR(t.gen, GEN2); /* later end */
  CHECK_INT(t.replica, 0);
  /* A timestamp before GEN2 started picks GEN. */
  o.has_timestamp = 1;
  o.timestamp_ns = 2000000002LL * NS_PER_SEC;
  CHECK_INT(restore_choose_sync(bs, 1, &o, &t, g_err, sizeof(g_err)), 0);
  CHECK_STR(t.gen, GEN);
  /* After every upload: still the latest (Litestream: no backups). */
  o.timestamp_ns = 2100000000LL * NS_PER_SEC;
  CHECK_INT(restore_choose_sync(bs, 1, &o, &t, g_err, sizeof(g_err)), 0);
  CHECK_STR(t.gen, GEN2);
  /* Before anything. */
  o.timestamp_ns = 1000000000LL * NS_PER_SEC;
  CHECK_INT(restore_choose_sync(bs, 1, &o, &t, g_err, sizeof(g_err)),
            ERR_NO_BACKUPS);
  CHECK_STR(g_err, "no matching backups found");
  o.has_timestamp = 0;
  o.generation = GEN;
  CHECK_INT(restore_choose_sync(bs, 1, &o, &t, g_err, sizeof(g_err)), 0);
  CHECK_STR(t.gen, GEN);
  CHECK_INT(t.start_ns, 2000000000LL * NS_PER_SEC);
  CHECK_INT(t.end_ns, 2000000003LL * NS_PER_SEC);
  o.generation = "ffffffffffffffff";
  CHECK_INT(restore_choose_sync(bs, 1, &o, &t, g_err, sizeof(g_err)),
            ERR_NO_BACKUPS);
  /* No replicas at all. */
  CHECK_INT(restore_choose_sync(bs, 0, &o, &t, g_err, sizeof(g_err)),
            ERR_NO_BACKUPS);
}

/* S3 and Azure list last-modified times to the second: two generations
 * whose uploads all fall in one second tie, and the later one (the greater
 * name, as gen_new makes them) must win, else a restore after a quick
 * failover misses the new host's writes.  The same generation on two
 * replicas keeps the earlier replica. */
TEST(choose_breaks_a_tie_by_the_later_name) {
  char *r1 = xasprintf("%s/tie1", g_dir), *r2 = xasprintf("%s/tie2", g_dir);
  char *d1 = xasprintf("%s/tie-src1", g_dir),
       *d2 = xasprintf("%s/tie-src2", g_dir);
  char *d3 = xasprintf("%s/tie-src3", g_dir);
  struct backend *b1 = open_backend(r1, -1), *b2 = open_backend(r2, -1);
  struct built x = {0}, y = {0}, z = {0};
  char older[GEN_LEN + 1], newer[GEN_LEN + 1];
  gen_new(older);
  do /* at most a millisecond */
    gen_new(newer);
  while (strcmp(newer, older) <= 0);
  CHECK(strcmp(newer, older) > 0); /* a later gen_new sorts after */
  build(b1, newer, d1, 0, 2000000000, &x);
  build(b1, older, d2, 0, 2000000000, &y);
  struct restore_opts o = {.parallelism = 8};
  struct restore_target t;
  struct backend *bs[] = {b1, b2};
  CHECK_INT(restore_choose_sync(bs, 1, &o, &t, g_err, sizeof(g_err)), 0);
  CHECK_STR(t.gen, newer);
  build(b2, newer, d3, 0, 2000000000, &z);
  CHECK_INT(restore_choose_sync(bs, 2, &o, &t, g_err, sizeof(g_err)), 0);
  CHECK_STR(t.gen, newer);
  CHECK_INT(t.replica, 0);
  built_destroy(&x);
  built_destroy(&y);
  built_destroy(&z);
  backend_close(b1);
  backend_close(b2);
  free(r1), free(r2), free(d1), free(d2), free(d3);
}

static void corrupt_copy(const char *root, const char *gen, const char *dst) {
  /* Copy the generation's objects into a fresh replica at dst. */
  char *cmd = xasprintf("mkdir -p %s/generations && cp -r %s/generations/%s "
                        "%s/generations/",
                        dst, root, gen, dst);
  if (system(cmd))
    fprintf(stderr, "%s failed\n", cmd);
  free(cmd);
}

TEST(stray_segments_below_the_snapshot_are_ignored) {
  char *root = xasprintf("%s/stray", g_dir);
  corrupt_copy(g_b->desc + 7, GEN, root);
  struct backend *b = open_backend(root, -1);
  /* A snapshot at index 1 (the state after index 0) and a broken segment
   * of index 0 that must not matter. */
  char *src = xasprintf("%s/out1/sub/dir/db", g_dir);
  /* Build the snapshot from a restore up to index 0. */
  struct restore_opts o = {.parallelism = 2, .has_index = 1, .index = 0};
  char *i0 = xasprintf("%s/i0.db", root);
  CHECK_INT(restore(b, GEN, &o, i0), 0);
  struct buf f;
  read_file(i0, &f);
  put_lz4(b, "generations/" GEN "/snapshots/00000001.snapshot.lz4", f.data,
          f.len, 2000000003);
  buf_destroy(&f);
  put_lz4(b, "generations/" GEN "/wal/00000000_00100000.wal.lz4",
          (const uint8_t *)"garbage", 7, 2000000002);
  o.has_index = 0;
  char *out = xasprintf("%s/out.db", root);
  CHECK_INT(restore(b, GEN, &o, out), 0);
  char *d = digest(out);
  CHECK_STR(d, g_built.final_digest);
  free(d);
  /* With -index 0 the snapshot at index 0 is used and the stray segment
   * is in the way: an error naming the missing object. */
  o.has_index = 1;
  o.index = 0;
  char *out2 = xasprintf("%s/out2.db", root);
  int rc = restore(b, GEN, &o, out2);
  CHECK_INT(rc, ERR_SEGMENT_GAP);
  CHECK(strstr(g_err, "not contiguous") != NULL);
  CHECK(strstr(g_err, "got 1048576") != NULL);
  free(out2);
  free(out);
  free(i0);
  free(src);
  backend_close(b);
  free(root);
}

static void rewrite_segment(struct backend *b, const char *key,
                            void (*edit)(struct buf *)) {
  struct buf c, d;
  buf_init(&c, 0);
  buf_init(&d, 0);
  struct sink s = {&c, -1, 0};
  backend_get_sync(b, key, 0, -1, &s, g_err, sizeof(g_err));
  lz4_decompress(c.data, c.len, &d);
  edit(&d);
  put_lz4(b, key, d.data, d.len, 2000000001);
  buf_destroy(&c);
  buf_destroy(&d);
}

static void flip_frame_byte(struct buf *d) {
  d->data[WAL_HEADER_SIZE + 24 + 4096 + 24 + 50] ^= 0x01; /* frame 2 */
}

static void drop_last_frame(struct buf *d) {
  d->len -= 4096 + 24;
}

TEST(corrupt_wal_content_names_the_object) {
  char *root = xasprintf("%s/corrupt", g_dir);
  corrupt_copy(g_b->desc + 7, GEN, root);
  struct backend *b = open_backend(root, -1);
  const char *key = "generations/" GEN "/wal/00000000_00000000.wal.lz4";
  rewrite_segment(b, key, flip_frame_byte);
  struct restore_opts o = {.parallelism = 8};
  char *out = xasprintf("%s/out/db", root);
  CHECK_INT(restore(b, GEN, &o, out), ERR_WAL_CORRUPT);
  char *want = xasprintf("restore: %s: WAL frame at offset %d fails its salt "
                         "or checksum check",
                         key, 32 + 4120);
  CHECK_STR(g_err, want);
  free(want);
  char *outdir = xasprintf("%s/out", root);
  CHECK_INT(stray_files(outdir, NULL), 0);

  /* Valid frames, but the index ends inside a transaction. */
  corrupt_copy(g_b->desc + 7, GEN, root); /* restore the original */
  char *k0 = key_wal_segment(GEN, 0, g_built.len0a);
  rewrite_segment(b, k0, drop_last_frame);
  int rc = restore(b, GEN, &o, out);
  CHECK_INT(rc, ERR_WAL_CORRUPT);
  CHECK(strstr(g_err, k0) && strstr(g_err, "ends inside a transaction"));
  free(k0);
  const char *k1 = "generations/" GEN "/wal/00000001_00000000.wal.lz4";
  CHECK_INT(stray_files(outdir, NULL), 0);

  /* Not LZ4 at all. */
  corrupt_copy(g_b->desc + 7, GEN, root);
  struct payload p = {(const uint8_t *)"not lz4", -1, 0, 7};
  backend_put_sync(b, k1, &p, g_err, sizeof(g_err));
  CHECK_INT(restore(b, GEN, &o, out), ERR_LZ4);
  want = xasprintf("restore: %s: corrupt LZ4 frame", k1);
  CHECK_STR(g_err, want);
  free(want);
  CHECK_INT(stray_files(outdir, NULL), 0);

  /* Missing snapshot. */
  corrupt_copy(g_b->desc + 7, GEN, root);
  char *snap =
      xasprintf("%s/generations/" GEN "/snapshots/00000000.snapshot.lz4", root);
  unlink(snap);
  CHECK_INT(restore(b, GEN, &o, out), ERR_NO_SNAPSHOT);
  CHECK_STR(g_err,
            "restore: generations/" GEN "/snapshots/: no snapshots available");
  free(snap);
  free(outdir);
  free(out);
  backend_close(b);
  free(root);
}

/* Large snapshot: ranged window (file backend) and temporary file (same
 * backend without ranged GETs). */
TEST(large_snapshot_ranges_and_temp_file) {
  char *root = xasprintf("%s/big", g_dir);
  struct backend *b = open_backend(root, -1);
  struct built big = {0};
  char *dbdir = xasprintf("%s/bigsrc", g_dir);
  build(b, GEN, dbdir, 20, 2000000000, &big);
  struct restore_opts o = {.parallelism = 8};
  char *out = xasprintf("%s/ranges.db", root);
  int64_t t0 = time_mono_ns();
  CHECK_INT(restore(b, GEN, &o, out), 0);
  printf("  20 MiB restore with ranges: %.0f ms, %lld GETs\n",
         (double)(time_mono_ns() - t0) / 1e6, (long long)b->op_count[BOP_GET]);
  CHECK(b->op_count[BOP_GET] >= 3 + 3); /* snapshot in >= 3 ranges */
  char *d = digest(out);
  CHECK_STR(d, big.final_digest);
  free(d);
  struct backend *nr = open_backend(root, 0);
  CHECK(!(nr->ops->caps & BACKEND_CAP_RANGE));
  char *out2 = xasprintf("%s/norange.db", root);
  CHECK_INT(restore(nr, GEN, &o, out2), 0);
  CHECK_INT(nr->op_count[BOP_GET], 4); /* one per object */
  d = digest(out2);
  CHECK_STR(d, big.final_digest);
  free(d);
  CHECK_INT(tmp_files(root), 0);
  /* Truncated large snapshot: fails in both modes, nothing left. */
  char *snap =
      xasprintf("%s/generations/" GEN "/snapshots/00000000.snapshot.lz4", root);
  CHECK_INT(truncate(snap, 20 << 20), 0);
  char *out3 = xasprintf("%s/t/x.db", root);
  CHECK_INT(restore(b, GEN, &o, out3), ERR_LZ4);
  CHECK(strstr(g_err, "snapshots/00000000.snapshot.lz4: corrupt LZ4 frame"));
  CHECK_INT(restore(nr, GEN, &o, out3), ERR_LZ4);
  char *tdir = xasprintf("%s/t", root);
  CHECK_INT(stray_files(tdir, NULL), 0);
  free(tdir);
  free(out3);
  free(snap);
  backend_close(nr);
  free(out2);
  free(out);
  built_destroy(&big);
  free(dbdir);
  backend_close(b);
  free(root);
}

/* --- the page writer against SQLite's frame-by-frame replay --- */

static uint32_t rnd(uint32_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 17;
  *x ^= *x << 5;
  return *x;
}

static void copy_file(const char *from, const char *to) {
  struct buf b;
  buf_init(&b, 0);
  if (!file_read_all(from, 0, &b))
    file_write_atomic(to, b.data, b.len, 0600);
  else
    unlink(to);
  buf_destroy(&b);
}

static int g_shrinks; /* VACUUMs that made a database smaller */

static int64_t page_count(sqlite3 *db) {
  sqlite3_stmt *st;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  return n;
}

struct target {
  uint32_t index;
  int64_t offset;
  char *digest;
};

/* One random history: inserts (overflow pages too), updates, deletes,
 * VACUUMs (the database shrinks) and WAL restarts (new indexes), each
 * transaction one segment.  Fills up to `max` targets with the source's
 * digest at randomly chosen segment ends, the last one included. */
static size_t random_history(struct backend *b, const char *gen,
                             const char *dir, uint32_t seed, struct target *tg,
                             size_t max) {
  mkdir_p(dir, 0700);
  char *path = xasprintf("%s/src.db", dir);
  char *walp = xasprintf("%s/src.db-wal", dir);
  char *copy = xasprintf("%s/copy.db", dir);
  char *copyw = xasprintf("%s/copy.db-wal", dir);
  uint32_t x = seed * 2654435761u + 7;
  sqlite3 *db;
  sqlite3_open(path, &db);
  char sql[512];
  snprintf(sql, sizeof(sql),
           "PRAGMA page_size=%d; PRAGMA journal_mode=WAL;"
           "PRAGMA wal_autocheckpoint=0;"
           "CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT);"
           "CREATE INDEX tk ON t(k)",
           seed % 3 ? 4096 : 1024);
  exec(db, sql);
  exec(db, "INSERT INTO t(k, v) SELECT x % 13, hex(randomblob(x * 7 % 900)) "
           "FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM "
           "c WHERE x<80) SELECT x FROM c)");
  exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
  struct buf f;
  read_file(path, &f);
  char *key = key_snapshot(gen, 0);
  put_lz4(b, key, f.data, f.len, 1000);
  free(key);
  buf_destroy(&f);
  uint32_t index = 0;
  int64_t off = 0, t = 1001;
  size_t n = 0;
  int steps = 30 + (int)(rnd(&x) % 20);
  for (int i = 0; i < steps; i++) {
    uint32_t r = rnd(&x) % 100;
    if (r < 40)
      snprintf(sql, sizeof(sql),
               "INSERT INTO t(k, v) SELECT x %% 13, hex(randomblob(%u + x)) "
               "FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT "
               "x+1 FROM c WHERE x<%u) SELECT x FROM c)",
               rnd(&x) % 3000, 1 + rnd(&x) % 40);
    else if (r < 60)
      snprintf(sql, sizeof(sql),
               "UPDATE t SET v = hex(randomblob(%u)), k = k + 1 WHERE id %% "
               "%u = %u",
               rnd(&x) % 2000, 2 + rnd(&x) % 5, rnd(&x) % 2);
    else if (r < 80)
      snprintf(sql, sizeof(sql), "DELETE FROM t WHERE id %% %u = %u",
               2 + rnd(&x) % 4, rnd(&x) % 2);
    else if (r < 90)
      snprintf(sql, sizeof(sql), "VACUUM");
    else {
      if (off) {
        exec(db, "PRAGMA wal_checkpoint(TRUNCATE)");
        index++;
        off = 0;
      }
      continue;
    }
    int64_t before = page_count(db);
    exec(db, sql);
    g_shrinks += page_count(db) < before;
    struct buf w;
    read_file(walp, &w);
    if ((int64_t)w.len <= off) {
      buf_destroy(&w);
      continue;
    }
    key = key_wal_segment(gen, index, off);
    put_lz4(b, key, w.data + off, w.len - (size_t)off, t++);
    free(key);
    off = (int64_t)w.len;
    buf_destroy(&w);
    int last = i == steps - 1;
    if (n < max && (last || rnd(&x) % 100 < 15 || n + 1 == max)) {
      if (n + 1 == max && !last)
        continue; /* keep the last slot for the end */
      copy_file(path, copy);
      copy_file(walp, copyw);
      tg[n].index = index;
      tg[n].offset = off;
      tg[n].digest = digest(copy);
      unlink(copyw);
      n++;
    }
  }
  if (!n || tg[n - 1].offset != off || tg[n - 1].index != index) {
    /* The history ended on a restart or an empty step: the end state is
     * the last segment's. */
    copy_file(path, copy);
    copy_file(walp, copyw);
    if (n == max)
      free(tg[--n].digest);
    tg[n].index = off ? index : index - 1;
    tg[n].offset = -1; /* everything */
    tg[n].digest = digest(copy);
    unlink(copyw);
    n++;
  }
  sqlite3_close(db);
  free(path);
  free(walp);
  free(copy);
  free(copyw);
  return n;
}

TEST(page_writer_equals_sqlite_replay) {
  int seeds = 24, compared = 0;
  for (int seed = 1; seed <= seeds; seed++) {
    char *root = xasprintf("%s/rand%d", g_dir, seed);
    char *src = xasprintf("%s/src", root);
    struct backend *b = open_backend(root, -1);
    struct target tg[6];
    g_small_blocks = seed % 2;
    size_t n = random_history(b, GEN, src, (uint32_t)seed, tg, 6);
    g_small_blocks = 0;
    /* Pages kept in memory, in the staging file (0 bytes of memory), or
     * some of each (a few pages' worth). */
    const char *mem[] = {"", "0", "30000"};
    setenv("SLUICE_RESTORE_MEMORY", mem[seed % 3], 1);
    for (size_t i = 0; i < n; i++) {
      struct restore_opts o = {.parallelism = 1 + seed % 4};
      if (tg[i].offset >= 0) {
        o.has_index = 1;
        o.index = tg[i].index;
        o.has_offset = 1;
        o.offset = tg[i].offset;
      }
      char *a = xasprintf("%s/pages-%zu.db", root, i);
      char *r = xasprintf("%s/replay-%zu.db", root, i);
      CHECK_INT(restore(b, GEN, &o, a), 0);
      o.replay_sqlite = 1;
      CHECK_INT(restore(b, GEN, &o, r), 0);
      struct buf x, y;
      read_file(a, &x);
      read_file(r, &y);
      if (x.len != y.len || memcmp(x.data, y.data, x.len))
        fprintf(stderr,
                "seed %d target %zu (index %u offset %lld): %zu vs %zu "
                "bytes\n",
                seed, i, tg[i].index, (long long)tg[i].offset, x.len, y.len);
      CHECK(x.len == y.len && !memcmp(x.data, y.data, x.len));
      buf_destroy(&x);
      buf_destroy(&y);
      char *d = digest(a);
      CHECK_STR(d, tg[i].digest);
      CHECK(strstr(d, " ok") != NULL);
      free(d);
      compared++;
      free(a);
      free(r);
      free(tg[i].digest);
    }
    CHECK_INT(tmp_files(root), 0);
    backend_close(b);
    free(src);
    free(root);
  }
  unsetenv("SLUICE_RESTORE_MEMORY");
  printf("  %d restores compared byte for byte over %d seeds, %d shrinking "
         "VACUUMs\n",
         compared, seeds, g_shrinks);
  CHECK(compared >= seeds * 2);
  CHECK(g_shrinks > 0);
}

/* An index holding only a WAL header (what a checkpoint's restart leaves
 * before the next commit) changes nothing: the page writer once cut the
 * database to zero pages there (a -timestamp between the restart and the
 * next commit restored an empty file that passed integrity_check). */
TEST(header_only_index_changes_nothing) {
  const char *gen = "00000000000000dd";
  const char *src_keys[] = {"snapshots/00000000.snapshot.lz4",
                            "wal/00000000_00000000.wal.lz4"};
  char *root = g_b->desc + strlen("file://");
  struct buf obj, plain;
  for (size_t i = 0; i < ARRAY_SIZE(src_keys); i++) {
    char *from = xasprintf("%s/generations/%s/%s", root, GEN, src_keys[i]);
    char *key = xasprintf("generations/%s/%s", gen, src_keys[i]);
    buf_init(&obj, 0);
    read_file(from, &obj);
    struct payload pl = {obj.data, -1, 0, (int64_t)obj.len};
    CHECK_INT(backend_put_sync(g_b, key, &pl, g_err, sizeof(g_err)), 0);
    if (i == 1) {
      /* Index 1: the header of index 0's WAL alone. */
      buf_init(&plain, 0);
      CHECK_INT(lz4_decompress(obj.data, obj.len, &plain), 0);
      char *k1 = xasprintf("generations/%s/wal/00000001_00000000.wal.lz4", gen);
      put_lz4(g_b, k1, plain.data, WAL_HEADER_SIZE, 2000000100);
      free(k1);
      buf_destroy(&plain);
    }
    buf_destroy(&obj);
    free(from);
    free(key);
  }
  /* The same segments through index 0 (one of its two segments is enough
   * for the comparison): restore with and without the header-only index. */
  for (int replay = 0; replay < 2; replay++) {
    struct restore_opts o = {.parallelism = 2, .replay_sqlite = replay};
    char *out = xasprintf("%s/hdr-only-%d.db", g_dir, replay);
    CHECK_INT(restore(g_b, gen, &o, out), 0);
    char *d = digest(out);
    CHECK_STR(d, g_built.seg1_digest);
    free(d);
    free(out);
  }
}

int main(void) {
  if (!mkdtemp(g_dir) || loop_init()) {
    perror("setup");
    return 1;
  }
  struct log_config lc = {LOG_WARN, 0, 1};
  log_setup(&lc);
  char *root = xasprintf("%s/replica", g_dir);
  g_b = open_backend(root, -1);
  char *dbdir = xasprintf("%s/src", g_dir);
  build(g_b, GEN, dbdir, 0, 2000000000, &g_built);
  /* A second, later generation. */
  struct built other = {0};
  char *dbdir2 = xasprintf("%s/src2", g_dir);
  build(g_b, GEN2, dbdir2, 0, 2000000010, &other);
  RUN(restores_latest_and_point_in_time);
  RUN(choose_generation);
  RUN(choose_breaks_a_tie_by_the_later_name);
  RUN(stray_segments_below_the_snapshot_are_ignored);
  RUN(corrupt_wal_content_names_the_object);
  RUN(large_snapshot_ranges_and_temp_file);
  RUN(page_writer_equals_sqlite_replay);
  RUN(header_only_index_changes_nothing);
  built_destroy(&other);
  built_destroy(&g_built);
  backend_close(g_b);
  free(dbdir);
  free(dbdir2);
  free(root);
  CHECK_INT(loop_close(), 0);
  rm_rf(g_dir);
  T_DONE();
}
