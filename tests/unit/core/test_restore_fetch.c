/*
 * Fetching and decoding one object (core/restore_fetch.c): the block mode
 * that decodes independent LZ4 blocks in parallel against frames made by
 * liblz4 with every option (block sizes, block and content checksums,
 * content size, stored and short blocks, several frames, skippable
 * frames, linked blocks), fetched whole or in ranges of several sizes,
 * each compared byte for byte with the input; corrupt and truncated
 * objects fail with ERR_LZ4 naming the key.  The same again with the
 * content given to a sink in order (as WAL segments are) and the buffers
 * from a bufpool; a sink failure is reported, after the frame's end in
 * block mode, unless the content checksum fails there.
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/util.h"
#include "core/restore_fetch.h"
#include "format/lz4frame.h"
#include "loop/loop.h"
#include "t.h"

static char g_dir[] = "/tmp/sluice-fetch.XXXXXX";
static char g_err[1024];
static struct backend *g_b;
static struct buf g_data;

/* Text-like and random stretches, so frames hold compressed and stored
 * blocks. */
static void make_data(size_t n, unsigned seed) {
  buf_init(&g_data, 0);
  buf_reserve(&g_data, n);
  srand(seed);
  static const char *words[] = {"alpha ",  "beta ", "gamma ", "delta ",
                                "sqlite ", "page ", "frame "};
  while (g_data.len < n) {
    size_t run = 1000 + (size_t)rand() % 300000;
    int random = rand() % 3 == 0;
    for (size_t i = 0; i < run && g_data.len < n; i++) {
      if (random) {
        g_data.data[g_data.len++] = (uint8_t)rand();
      } else {
        const char *w = words[rand() % 7];
        for (; *w && g_data.len < n; w++)
          g_data.data[g_data.len++] = (uint8_t)*w;
      }
    }
  }
}

struct variant {
  const char *name;
  LZ4F_blockSizeID_t bs;
  LZ4F_blockMode_t mode;
  int csum, bsum, csize;
  size_t flush_every; /* 0: never (full blocks) */
  int frames;         /* the data split into this many frames */
  int skippable;      /* a skippable frame between frames */
};

/* One or more frames holding g_data, as liblz4 writes them. */
static void encode(const struct variant *v, struct buf *out) {
  buf_init(out, 0);
  size_t per = g_data.len / (size_t)v->frames + 1;
  for (int k = 0; k < v->frames; k++) {
    size_t from = (size_t)k * per, to = MIN(g_data.len, from + per);
    if (k && v->skippable) {
      uint8_t sk[8 + 5] = {0x51, 0x2A, 0x4D, 0x18, 5, 0, 0, 0, 1, 2, 3, 4, 5};
      buf_append(out, sk, sizeof(sk));
    }
    LZ4F_preferences_t p;
    memset(&p, 0, sizeof(p));
    p.frameInfo.blockSizeID = v->bs;
    p.frameInfo.blockMode = v->mode;
    p.frameInfo.contentChecksumFlag =
        v->csum ? LZ4F_contentChecksumEnabled : LZ4F_noContentChecksum;
    p.frameInfo.blockChecksumFlag =
        v->bsum ? LZ4F_blockChecksumEnabled : LZ4F_noBlockChecksum;
    p.frameInfo.contentSize = v->csize ? (unsigned long long)(to - from) : 0;
    LZ4F_cctx *c;
    LZ4F_createCompressionContext(&c, LZ4F_VERSION);
    size_t cap = LZ4F_compressBound(to - from, &p) + 64 +
                 (v->flush_every ? (to - from) / v->flush_every * 16 : 0);
    buf_reserve(out, cap);
    uint8_t *o = out->data + out->len;
    size_t w = LZ4F_compressBegin(c, o, cap, &p);
    for (size_t at = from; at < to;) {
      size_t n = v->flush_every ? MIN(v->flush_every, to - at) : to - at;
      w += LZ4F_compressUpdate(c, o + w, cap - w, g_data.data + at, n, NULL);
      if (v->flush_every)
        w += LZ4F_flush(c, o + w, cap - w, NULL);
      at += n;
    }
    w += LZ4F_compressEnd(c, o + w, cap - w, NULL);
    CHECK(!LZ4F_isError(w));
    out->len += w;
    LZ4F_freeCompressionContext(c);
  }
}

static int g_done;
static void on_done(struct fetch *f) {
  (void)f;
  g_done = 1;
}

/* Sink mode (g_sink set): the decoded content goes to sink_collect in
 * order, which fails like a WAL check (ERR_WAL_CORRUPT) at the first byte
 * that differs from g_data, or at byte g_sink_fail_at; the buffers come
 * from g_pool when set. */
static int g_sink;
static struct bufpool *g_pool;
static size_t g_sink_fail_at = SIZE_MAX;
static struct buf g_sunk;
static struct fetch *g_f;

static int sink_collect(void *arg, const uint8_t *p, size_t n) {
  (void)arg;
  size_t at = g_sunk.len;
  if (at + n > g_data.len || memcmp(p, g_data.data + at, n) ||
      (g_sink_fail_at >= at && g_sink_fail_at < at + n)) {
    job_fail(g_f, ERR_WAL_CORRUPT, "%s: sink saw bad bytes near %zu", g_f->key,
             at);
    return ERR_WAL_CORRUPT;
  }
  buf_append(&g_sunk, p, n);
  return 0;
}

/* Fetches key into a fresh file; returns the fetch status, the decoded
 * file in out, and whether block mode stayed on. */
static int run_fetch(const char *key, int64_t size, int64_t whole_max,
                     int64_t chunk, int window, struct buf *out, int *bmode,
                     char *err, size_t errlen) {
  char *path = xasprintf("%s/out", g_dir);
  char *tmp = xasprintf("%s/tmp", g_dir);
  unlink(path);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  struct fetch f;
  memset(&f, 0, sizeof(f));
  f.blocks = 1;
  f.done = on_done;
  f.pool = g_pool;
  if (g_sink) {
    f.sink = sink_collect;
    buf_destroy(&g_sunk);
    buf_init(&g_sunk, 0);
    g_f = &f;
  }
  g_done = 0;
  fetch_start(&f, g_b, key, size, fd, 0, whole_max, chunk, window, tmp);
  CHECK_INT(loop_run_until(&g_done), 0); /* never stalls */
  int st = f.status;
  snprintf(err, errlen, "%s", f.err);
  *bmode = f.bmode;
  if (!st)
    CHECK_INT(f.out_len, (int64_t)g_data.len);
  fetch_destroy(&f);
  close(fd);
  buf_init(out, 0);
  if (g_sink) {
    *out = g_sunk; /* (moved) */
    buf_init(&g_sunk, 0);
  } else {
    file_read_all(path, 0, out);
  }
  free(path);
  free(tmp);
  return st;
}

static void put(const char *key, const struct buf *b) {
  struct payload pl = {b->data, -1, 0, (int64_t)b->len};
  CHECK_INT(backend_put_sync(g_b, key, &pl, g_err, sizeof(g_err)), 0);
}

static const struct variant variants[] = {
    {"sluice-like 4M indep csum", LZ4F_max4MB, LZ4F_blockIndependent, 1, 0, 0,
     0, 1, 0},
    {"64K indep csum+bsum+size", LZ4F_max64KB, LZ4F_blockIndependent, 1, 1, 1,
     0, 1, 0},
    {"256K indep short blocks", LZ4F_max256KB, LZ4F_blockIndependent, 1, 0, 0,
     77777, 1, 0},
    {"1M indep no csum, 3 frames + skippable", LZ4F_max1MB,
     LZ4F_blockIndependent, 0, 1, 1, 0, 3, 1},
    {"64K linked (one-context decoder)", LZ4F_max64KB, LZ4F_blockLinked, 1, 0,
     0, 0, 1, 0},
    {"4M linked short blocks", LZ4F_max4MB, LZ4F_blockLinked, 1, 1, 0, 300000,
     2, 0},
};

struct mode {
  const char *name;
  int64_t whole_max, chunk;
  int window;
};

static const struct mode modes[] = {
    {"whole", 64 << 20, 0, 1},
    {"ranges 70000 x2", 1000, 70000, 2},
    {"ranges 300000 x4", 1000, 300000, 4},
    {"ranges 4M+8 x2", 1000, (4 << 20) + 8, 2},
    {"ranges 5M x4", 1000, 5 << 20, 4},
};

static int block_mode_expected(const struct variant *v, const struct mode *m) {
  static const uint32_t bmax[] = {0,        0,         0,       0,
                                  64 << 10, 256 << 10, 1 << 20, 4 << 20};
  if (v->mode != LZ4F_blockIndependent)
    return 0;
  return !m->chunk || m->chunk >= (int64_t)bmax[v->bs] + 8;
}

TEST(every_frame_kind_in_every_fetch_mode) {
  int compared = 0, in_block_mode = 0;
  for (size_t i = 0; i < ARRAY_SIZE(variants); i++) {
    const struct variant *v = &variants[i];
    struct buf enc;
    encode(v, &enc);
    char key[64];
    snprintf(key, sizeof(key), "obj-%zu.lz4", i);
    put(key, &enc);
    for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
      struct buf out;
      int bmode;
      char err[1024];
      int st =
          run_fetch(key, (int64_t)enc.len, modes[m].whole_max, modes[m].chunk,
                    modes[m].window, &out, &bmode, err, sizeof(err));
      if (st || out.len != g_data.len)
        fprintf(stderr, "%s / %s: status %d %s\n", v->name, modes[m].name, st,
                err);
      CHECK_INT(st, 0);
      CHECK_INT(out.len, g_data.len);
      CHECK(out.len == g_data.len && !memcmp(out.data, g_data.data, out.len));
      CHECK_INT(bmode, block_mode_expected(v, &modes[m]));
      compared++;
      in_block_mode += bmode;
      buf_destroy(&out);
    }
    buf_destroy(&enc);
  }
  printf("  %d fetches compared, %d in block mode\n", compared, in_block_mode);
  CHECK(in_block_mode >= 10);
}

/* Each corruption must fail, in block mode and not, naming the key. */
TEST(corrupt_and_truncated_objects_fail) {
  const struct variant *v = &variants[1]; /* checksums everywhere */
  struct buf enc;
  encode(v, &enc);
  struct {
    const char *name;
    size_t at;  /* byte to flip, or */
    size_t cut; /* bytes to drop from the end */
  } cases[] = {
      {"flip in a block", enc.len / 2, 0},
      {"flip in the content checksum", enc.len - 2, 0},
      {"flip in the header checksum", 6, 0},
      {"drop the content checksum", 0, 4},
      {"drop the last block half", 0, 30000},
  };
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    struct buf bad;
    buf_init(&bad, 0);
    buf_append(&bad, enc.data, enc.len - cases[i].cut);
    if (!cases[i].cut)
      bad.data[cases[i].at] ^= 0x40;
    put("bad.lz4", &bad);
    for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
      struct buf out;
      int bmode;
      char err[1024];
      int st = run_fetch("bad.lz4", (int64_t)bad.len, modes[m].whole_max,
                         modes[m].chunk, modes[m].window, &out, &bmode, err,
                         sizeof(err));
      if (st != ERR_LZ4)
        fprintf(stderr, "%s / %s: status %d %s\n", cases[i].name, modes[m].name,
                st, err);
      CHECK_INT(st, ERR_LZ4);
      CHECK(strstr(err, "bad.lz4") != NULL);
      buf_destroy(&out);
    }
    buf_destroy(&bad);
  }
  /* Not LZ4 at all, and nothing. */
  struct buf junk;
  buf_init(&junk, 0);
  buf_append(&junk, g_data.data, 100000);
  put("junk.lz4", &junk);
  struct buf out;
  int bmode;
  char err[1024];
  CHECK_INT(run_fetch("junk.lz4", 100000, 1000, 70000, 2, &out, &bmode, err,
                      sizeof(err)),
            ERR_LZ4);
  buf_destroy(&out);
  buf_destroy(&junk);
  buf_destroy(&enc);
}

/* A sink failure on an intact frame is the fetch's failure, with the
 * sink's message (after the frame's end, in block mode). */
TEST(sink_failure_reported_at_frame_end) {
  const struct variant *v = &variants[0]; /* 4M blocks, content checksum */
  struct buf enc;
  encode(v, &enc);
  put("sinkfail.lz4", &enc);
  for (size_t m = 0; m < ARRAY_SIZE(modes); m++) {
    g_sink_fail_at = 5 << 20; /* in the second block */
    struct buf out;
    int bmode;
    char err[1024];
    int st = run_fetch("sinkfail.lz4", (int64_t)enc.len, modes[m].whole_max,
                       modes[m].chunk, modes[m].window, &out, &bmode, err,
                       sizeof(err));
    g_sink_fail_at = SIZE_MAX;
    if (st != ERR_WAL_CORRUPT)
      fprintf(stderr, "%s: status %d %s\n", modes[m].name, st, err);
    CHECK_INT(st, ERR_WAL_CORRUPT);
    CHECK(strstr(err, "sinkfail.lz4: sink saw bad bytes near") != NULL);
    CHECK(out.len <= (size_t)(5 << 20)); /* nothing given after it */
    buf_destroy(&out);
  }
  /* Garbage that decodes (a flipped byte in a block, no block checksums)
   * fails the sink first; in block mode the content checksum is still
   * what is reported: the object is corrupt, not the WAL it carries. */
  struct buf bad;
  buf_init(&bad, 0);
  buf_append(&bad, enc.data, enc.len);
  int lz4_named = 0;
  for (size_t k = 0; k < 8; k++) {
    size_t at = enc.len / 2 + k * 977;
    bad.data[at] ^= 0x20;
    put("sinkbad.lz4", &bad);
    struct buf out;
    int bmode;
    char err[1024];
    int st = run_fetch("sinkbad.lz4", (int64_t)bad.len, 64 << 20, 0, 1, &out,
                       &bmode, err, sizeof(err));
    CHECK(bmode);
    if (st != ERR_LZ4)
      fprintf(stderr, "flip at %zu: status %d %s\n", at, st, err);
    CHECK_INT(st, ERR_LZ4);
    lz4_named += st == ERR_LZ4 && strstr(err, "content checksum") != NULL;
    buf_destroy(&out);
    bad.data[at] ^= 0x20;
  }
  printf("  %d of 8 flips decoded to garbage, named by the content checksum\n",
         lz4_named);
  CHECK(lz4_named > 0); /* the deferred case did happen */
  buf_destroy(&bad);
  buf_destroy(&enc);
}

/* The pool hands back the smallest buffer that fits and keeps at most max
 * bytes. */
TEST(bufpool_reuses_best_fit_up_to_max) {
  struct bufpool bp;
  bufpool_init(&bp, 10 << 20);
  size_t c1, c2, c3, c;
  uint8_t *a = bufpool_get(&bp, 4 << 20, &c1);
  uint8_t *b = bufpool_get(&bp, 6 << 20, &c2);
  uint8_t *small = bufpool_get(&bp, 1000, &c3);
  CHECK_INT(c1, 4 << 20);
  CHECK_INT(c2, 6 << 20);
  CHECK_INT(c3, 1000);
  memset(a, 1, c1);
  memset(b, 2, c2);
  bufpool_put(&bp, b, c2);
  bufpool_put(&bp, a, c1);
  bufpool_put(&bp, small, c3); /* past max: freed */
  CHECK_INT(bp.bytes, 10 << 20);
  CHECK_INT(bp.n, 2);
  CHECK(bufpool_get(&bp, 2 << 20, &c) == a && c == (4u << 20));
  CHECK(bufpool_get(&bp, 2 << 20, &c) == b && c == (6u << 20));
  CHECK_INT(bp.bytes, 0);
  uint8_t *d = bufpool_get(&bp, 7 << 20, &c); /* none left: a new one */
  CHECK(d != a && d != b && c == (7u << 20));
  free(d);
  bufpool_put(&bp, a, 4 << 20);
  bufpool_put(&bp, b, 6 << 20);
  bufpool_destroy(&bp); /* frees what it keeps (ASan: no leak) */
  size_t cn;
  uint8_t *n = bufpool_get(NULL, 100, &cn); /* no pool: plain malloc */
  CHECK_INT(cn, 100);
  bufpool_put(NULL, n, cn);
}

int main(void) {
  if (!mkdtemp(g_dir) || loop_init()) {
    perror("setup");
    return 1;
  }
  struct log_config lc = {LOG_WARN, 0, 1};
  log_setup(&lc);
  char *root = xasprintf("%s/replica", g_dir);
  struct replica_config rc = {0};
  rc.type = "file";
  rc.name = "file";
  rc.path = root;
  g_b = backend_open(&rc, g_err, sizeof(g_err));
  CHECK(g_b != NULL);
  make_data(9 << 20, 12);
  RUN(every_frame_kind_in_every_fetch_mode);
  RUN(corrupt_and_truncated_objects_fail);
  RUN(bufpool_reuses_best_fit_up_to_max);
  struct bufpool pool;
  bufpool_init(&pool, 64 << 20);
  g_pool = &pool;
  g_sink = 1; /* as the WAL segments are fetched */
  RUN(every_frame_kind_in_every_fetch_mode);
  RUN(corrupt_and_truncated_objects_fail);
  RUN(sink_failure_reported_at_frame_end);
  g_sink = 0; /* snapshots, buffers from the pool */
  RUN(every_frame_kind_in_every_fetch_mode);
  g_pool = NULL;
  bufpool_destroy(&pool);
  backend_close(g_b);
  buf_destroy(&g_data);
  free(root);
  CHECK_INT(loop_close(), 0);
  rm_rf(g_dir);
  T_DONE();
}
