/*
 * The stored form of objects (core/codec.c): LZ4 inside age when the
 * replica has recipients; reading tells age from LZ4 by the first bytes,
 * whole or fed in pieces (even one byte at a time across the magic), and
 * says which key problem it met.  Uploading an fd encrypts into an
 * unnamed temporary file first, through the real file backend.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/util.h"
#include "core/codec.h"
#include "format/lz4frame.h"
#include "loop/loop.h"
#include "t.h"

static char g_dir[] = "/tmp/sluice-codec.XXXXXX";

static void add_pair(struct age_keys *k, uint8_t seed, int recipient,
                     int identity) {
  uint8_t sk[32];
  char text[128], r[AGE_KEY_TEXT_MAX], err[256];
  for (int i = 0; i < 32; i++)
    sk[i] = (uint8_t)(seed * 31 + i);
  bech32_encode("AGE-SECRET-KEY-", sk, 32, text, sizeof(text));
  struct age_keys tmp = {0};
  CHECK_INT(age_keys_add_identities(&tmp, text, err, sizeof(err)), 0);
  age_recipient_string(tmp.identities[0].pub, r, sizeof(r));
  if (identity)
    CHECK_INT(age_keys_add_identities(k, text, err, sizeof(err)), 0);
  if (recipient)
    CHECK_INT(age_keys_add_recipients(k, r, err, sizeof(err)), 0);
  age_keys_destroy(&tmp);
}

static uint8_t *sample(size_t n) {
  uint8_t *p = xmalloc(n ? n : 1);
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = (i / 5000) % 2 ? (uint8_t)x : (uint8_t)(i % 7);
  }
  return p;
}

/* Streams obj through codec_dec in pieces of step into a file; returns
 * the status and the decoded bytes in out. */
static int stream(const struct backend *b, const struct buf *obj, size_t step,
                  struct buf *out) {
  char path[64];
  snprintf(path, sizeof(path), "%s/out", g_dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  struct codec_dec *d = codec_dec_new(b, fd, 0);
  int rc = 0;
  for (size_t off = 0; !rc && off < obj->len; off += step)
    rc = codec_dec_feed(d, obj->data + off, MIN(step, obj->len - off));
  int64_t n = -1;
  if (!rc)
    rc = codec_dec_end(d, &n);
  codec_dec_free(d);
  buf_reset(out);
  if (!rc) {
    struct buf f;
    CHECK_INT(file_read_all(path, 1 << 30, &f), 0);
    CHECK_INT((int64_t)f.len, n);
    buf_append(out, f.data, f.len);
    buf_destroy(&f);
  }
  close(fd);
  return rc;
}

TEST(encode_decode) {
  struct backend plain, enc, reader, stranger, writer;
  memset(&plain, 0, sizeof(plain));
  memset(&enc, 0, sizeof(enc));
  memset(&reader, 0, sizeof(reader));
  memset(&stranger, 0, sizeof(stranger));
  memset(&writer, 0, sizeof(writer));
  add_pair(&enc.age, 1, 1, 1);
  add_pair(&reader.age, 1, 0, 1); /* identity only: reads, never encrypts */
  add_pair(&stranger.age, 2, 0, 1);
  add_pair(&writer.age, 1, 1, 0); /* recipient only */
  CHECK(codec_encrypts(&enc) && !codec_encrypts(&reader) &&
        !codec_encrypts(&plain));
  size_t sizes[] = {0, 1, 65536, 300000};
  struct buf out;
  buf_init(&out, 0);
  for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
    uint8_t *p = sample(sizes[i]);
    struct buf e, l;
    buf_init(&e, 0);
    buf_init(&l, 0);
    CHECK_INT(codec_encode(&enc, p, sizes[i], &e), 0);
    CHECK_INT(codec_encode(&reader, p, sizes[i], &l), 0);
    CHECK(!memcmp(e.data, AGE_INTRO, strlen(AGE_INTRO)));
    CHECK(!memcmp(l.data, "\x04\x22\x4d\x18\x64\x70\xb9", 7));
    size_t steps[] = {1, 7, 19, 4096, 1 << 20};
    for (size_t s = 0; s < ARRAY_SIZE(steps); s++) {
      if (steps[s] == 1 && e.len > 100000)
        continue;
      CHECK_INT(stream(&reader, &e, steps[s], &out), 0);
      CHECK(out.len == sizes[i] && !memcmp(out.data, p, sizes[i]));
      /* A plain object in an encrypted replica is read as LZ4. */
      CHECK_INT(stream(&reader, &l, steps[s], &out), 0);
      CHECK(out.len == sizes[i] && !memcmp(out.data, p, sizes[i]));
    }
    CHECK_INT(stream(&stranger, &e, 4096, &out), ERR_AGE_NO_MATCH);
    CHECK_INT(stream(&writer, &e, 4096, &out), ERR_AGE_NO_IDENTITY);
    CHECK_INT(stream(&plain, &e, 1, &out), ERR_AGE_NO_IDENTITY);
    CHECK_INT(stream(&plain, &l, 4096, &out), 0);
    buf_reset(&out);
    CHECK_INT(codec_decode(&reader, e.data, e.len, &out), 0);
    CHECK(out.len == sizes[i] && !memcmp(out.data, p, sizes[i]));
    buf_reset(&out);
    CHECK_INT(codec_decode(&stranger, e.data, e.len, &out), ERR_AGE_NO_MATCH);
    CHECK_INT(codec_decode(&plain, e.data, e.len, &out), ERR_AGE_NO_IDENTITY);
    buf_reset(&out);
    CHECK_INT(codec_decode(&reader, l.data, l.len, &out), 0);
    CHECK_INT(out.len, sizes[i]);
    /* Cut short or tampered: an error saying so, never a short success. */
    struct buf cut = {e.data, e.len - 1, e.len, 0};
    CHECK_INT(stream(&reader, &cut, 4096, &out), ERR_AGE_PAYLOAD);
    e.data[e.len / 2 + 60] ^= 1;
    int rc = stream(&reader, &e, 4096, &out);
    CHECK(codec_bad_object(rc));
    buf_destroy(&e);
    buf_destroy(&l);
    free(p);
  }
  /* Shorter than the magic, and empty: not age, so a bad LZ4 frame. */
  struct buf tiny = {(uint8_t *)"age-enc", 7, 7, 0};
  CHECK_INT(stream(&reader, &tiny, 1, &out), ERR_LZ4);
  struct buf none = {NULL, 0, 0, 0};
  CHECK_INT(stream(&reader, &none, 1, &out), ERR_LZ4);
  buf_destroy(&out);
  age_keys_destroy(&enc.age);
  age_keys_destroy(&reader.age);
  age_keys_destroy(&stranger.age);
  age_keys_destroy(&writer.age);
}

/* codec_put_fd through the real file backend: the stored object is the
 * encrypted file, the source fd is untouched, no file is left behind. */
static void on_done(void *arg, int status, const char *err) {
  int *st = arg;
  *st = status;
  if (status)
    fprintf(stderr, "put: %s\n", err ? err : "?");
}

TEST(put_fd) {
  char root[128], tmpdir[128], url[160];
  snprintf(root, sizeof(root), "%s/replica", g_dir);
  snprintf(tmpdir, sizeof(tmpdir), "%s/meta", g_dir);
  snprintf(url, sizeof(url), "file://%s", root);
  CHECK_INT(mkdir(tmpdir, 0700), 0);
  struct replica_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.type = "file";
  cfg.path = root;
  char err[256];
  struct backend *b = backend_open(&cfg, err, sizeof(err));
  CHECK(b != NULL);
  if (!b)
    return;
  add_pair(&b->age, 3, 1, 1);
  size_t n = 1 << 20;
  uint8_t *p = sample(n);
  struct buf l;
  buf_init(&l, 0);
  CHECK_INT(lz4_compress(p, n, &l), 0);
  char src[128];
  snprintf(src, sizeof(src), "%s/src.lz4", g_dir);
  CHECK_INT(file_write_atomic(src, l.data, l.len, 0600), 0);
  int fd = open(src, O_RDONLY);
  int st = 1;
  codec_put_fd(b,
               "generations/0000000000000001/snapshots/00000000.snapshot.lz4",
               fd, (int64_t)l.len, tmpdir, on_done, &st);
  while (st == 1)
    loop_run_once();
  CHECK_INT(st, 0);
  close(fd);
  struct buf got, out;
  buf_init(&out, 0);
  char obj[256];
  snprintf(obj, sizeof(obj),
           "%s/generations/0000000000000001/snapshots/00000000.snapshot.lz4",
           root);
  CHECK_INT(file_read_all(obj, 1 << 30, &got), 0);
  CHECK(got.len > l.len && !memcmp(got.data, AGE_INTRO, strlen(AGE_INTRO)));
  CHECK_INT(codec_decode(b, got.data, got.len, &out), 0);
  CHECK(out.len == n && !memcmp(out.data, p, n));
  /* Nothing left in the temporary directory. */
  DIR *d = opendir(tmpdir);
  int entries = 0;
  for (struct dirent *e; d && (e = readdir(d));)
    entries += e->d_name[0] != '.';
  if (d)
    closedir(d);
  CHECK_INT(entries, 0);
  buf_destroy(&got);
  buf_destroy(&out);
  buf_destroy(&l);
  free(p);
  backend_close(b);
}

int main(void) {
  if (!mkdtemp(g_dir))
    return 1;
  if (loop_init())
    return 1;
  RUN(encode_decode);
  RUN(put_fd);
  CHECK_INT(loop_close(), 0);
  rm_rf(g_dir);
  T_DONE();
}
