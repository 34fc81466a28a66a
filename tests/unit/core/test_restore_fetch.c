/*
 * Fetching and decoding one object (core/restore_fetch.c): the block mode
 * that decodes independent LZ4 blocks in parallel against frames made by
 * liblz4 with every option (block sizes, block and content checksums,
 * content size, stored and short blocks, several frames, skippable
 * frames, linked blocks), fetched whole or in ranges of several sizes,
 * each compared byte for byte with the input; corrupt and truncated
 * objects fail with ERR_LZ4 naming the key.
 */
#include <errno.h>
#include <fcntl.h>
#include <lz4frame.h>
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
  file_read_all(path, 0, out);
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
  backend_close(g_b);
  buf_destroy(&g_data);
  free(root);
  CHECK_INT(loop_close(), 0);
  rm_rf(g_dir);
  T_DONE();
}
