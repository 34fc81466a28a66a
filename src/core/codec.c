/*
 * LZ4 inside optional age: the stored form of every object (codec.h).
 */
#include "core/codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "format/lz4frame.h"
#include "loop/loop.h"

#define MAGIC_LEN (sizeof(AGE_MAGIC) - 1)
#define READ_CHUNK AGE_CHUNK

int codec_encrypts(const struct backend *b) {
  return b && b->age.n_recipients > 0;
}

int codec_bad_object(int rc) {
  return rc == ERR_LZ4 || rc == ERR_AGE_HEADER || rc == ERR_AGE_NO_MATCH ||
         rc == ERR_AGE_HMAC || rc == ERR_AGE_PAYLOAD ||
         rc == ERR_AGE_NO_IDENTITY;
}

/* 1 if the first n bytes of an object can still be the age magic. */
static int maybe_age(const uint8_t *p, size_t n) {
  return !memcmp(p, AGE_MAGIC, MIN(n, MAGIC_LEN));
}

int codec_encode(const struct backend *b, const uint8_t *src, size_t n,
                 struct buf *out) {
  size_t start = out->len;
  int rc = lz4_compress(src, n, out);
  if (!rc && codec_encrypts(b)) {
    rc = age_encrypt_inplace(&b->age, out, start);
    if (rc)
      out->len = start;
  }
  return rc;
}

static int append_out(void *arg, const uint8_t *p, size_t n) {
  return buf_append(arg, p, n);
}

int codec_decode(const struct backend *b, const uint8_t *src, size_t n,
                 struct buf *out) {
  if (n < MAGIC_LEN || !maybe_age(src, n))
    return lz4_decompress(src, n, out);
  if (!b || !b->age.n_identities)
    return ERR_AGE_NO_IDENTITY;
  /* The frame is at most the object's size. */
  struct buf frame;
  buf_init(&frame, n);
  struct age_dec *d = age_dec_new(&b->age, append_out, &frame);
  int rc = age_dec_feed(d, src, n);
  if (!rc)
    rc = age_dec_end(d);
  age_dec_free(d);
  if (!rc)
    rc = lz4_decompress(frame.data, frame.len, out);
  buf_destroy(&frame);
  return rc;
}

/* --- incremental --- */

enum dec_mode { M_SNIFF, M_PLAIN, M_AGE };

struct codec_dec {
  const struct age_keys *keys; /* borrowed from the backend */
  struct lz4_dec *lz;
  struct age_dec *age;
  enum dec_mode mode;
  uint8_t head[MAGIC_LEN];
  size_t head_len;
  int err;
};

struct codec_dec *codec_dec_new(const struct backend *b, int out_fd,
                                int64_t out_off) {
  struct codec_dec *d = xcalloc(1, sizeof(*d));
  d->keys = b ? &b->age : NULL;
  d->lz = lz4_dec_new(out_fd, out_off);
  return d;
}

struct codec_dec *codec_dec_new_sink(const struct backend *b, lz4_sink_fn fn,
                                     void *arg) {
  struct codec_dec *d = xcalloc(1, sizeof(*d));
  d->keys = b ? &b->age : NULL;
  d->lz = lz4_dec_new_sink(fn, arg);
  return d;
}

static int to_lz4(void *arg, const uint8_t *p, size_t n) {
  return lz4_dec_feed(arg, p, n);
}

static int pass(struct codec_dec *d, const uint8_t *p, size_t n) {
  return d->mode == M_AGE ? age_dec_feed(d->age, p, n)
                          : lz4_dec_feed(d->lz, p, n);
}

/* Enough of the object was seen to tell: send it the right way. */
static int decide(struct codec_dec *d) {
  if (d->head_len == MAGIC_LEN && maybe_age(d->head, d->head_len)) {
    if (!d->keys || !d->keys->n_identities)
      return ERR_AGE_NO_IDENTITY;
    d->mode = M_AGE;
    d->age = age_dec_new(d->keys, to_lz4, d->lz);
  } else {
    d->mode = M_PLAIN;
  }
  return pass(d, d->head, d->head_len);
}

int codec_dec_feed(struct codec_dec *d, const uint8_t *src, size_t n) {
  if (d->err || !n)
    return d->err;
  if (d->mode == M_SNIFF) {
    size_t k = MIN(n, MAGIC_LEN - d->head_len);
    memcpy(d->head + d->head_len, src, k);
    d->head_len += k;
    src += k;
    n -= k;
    if (d->head_len < MAGIC_LEN && maybe_age(d->head, d->head_len))
      return 0;
    if ((d->err = decide(d)))
      return d->err;
  }
  if (n)
    d->err = pass(d, src, n);
  return d->err;
}

int codec_dec_end(struct codec_dec *d, int64_t *out_len) {
  if (!d->err && d->mode == M_SNIFF)
    d->err = decide(d); /* shorter than the magic: not age */
  if (!d->err && d->mode == M_AGE)
    d->err = age_dec_end(d->age);
  if (!d->err)
    d->err = lz4_dec_end(d->lz, out_len);
  return d->err;
}

void codec_dec_free(struct codec_dec *d) {
  if (!d)
    return;
  age_dec_free(d->age);
  lz4_dec_free(d->lz);
  free(d);
}

/* --- uploading an encrypted copy of a file --- */

struct put_job {
  struct backend *b;
  char *key;
  int in_fd; /* borrowed */
  int64_t len;
  char *tmpdir;
  int fd;
  int64_t size;
  int rc;
  char err[512];
  backend_cb cb;
  void *arg;
};

static int write_fd(void *arg, const uint8_t *p, size_t n) {
  struct put_job *j = arg;
  int rc = write_full(j->fd, p, n);
  if (!rc)
    j->size += (int64_t)n;
  return rc;
}

/* An unnamed file in tmpdir; where O_TMPFILE is not supported, a named
 * one removed at once. */
static int open_tmp(const char *dir) {
  int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
    return fd < 0 ? -errno : fd;
  char *path = xasprintf("%s/.sluice-age.XXXXXX", dir);
  fd = mkostemp(path, O_CLOEXEC);
  int rc = fd < 0 ? -errno : fd;
  if (fd >= 0)
    unlink(path);
  free(path);
  return rc;
}

static void encrypt_work(void *arg) {
  struct put_job *j = arg;
  char e[128];
  int fd = open_tmp(j->tmpdir);
  if (fd < 0) {
    j->rc = fd;
    snprintf(j->err, sizeof(j->err), "%s: temporary file in %s: %s", j->key,
             j->tmpdir, strerror_r(-fd, e, sizeof(e)));
    return;
  }
  j->fd = fd;
  struct age_enc *enc = NULL;
  uint8_t *in = xmalloc(READ_CHUNK);
  int rc = age_enc_new(&j->b->age, write_fd, j, &enc);
  for (int64_t off = 0; !rc && off < j->len;) {
    size_t want = (size_t)MIN((int64_t)READ_CHUNK, j->len - off);
    ssize_t got = pread_full(j->in_fd, in, want, (off_t)off);
    if (got != (ssize_t)want) {
      rc = got < 0 ? (int)got : -EIO;
      break;
    }
    rc = age_enc_write(enc, in, want);
    off += (int64_t)want;
  }
  if (!rc)
    rc = age_enc_end(enc);
  age_enc_free(enc);
  free(in);
  if (rc) {
    j->rc = rc;
    snprintf(j->err, sizeof(j->err), "%s: cannot encrypt: %s", j->key,
             rc < 0 && rc > -4096 ? strerror_r(-rc, e, sizeof(e))
                                  : err_str(rc));
  }
}

static void close_work(void *arg) {
  struct put_job *j = arg;
  if (j->fd >= 0)
    close(j->fd); /* freeing a large file's blocks can take a while */
  j->fd = -1;
}

static void on_closed(void *arg, int status) {
  (void)status;
  struct put_job *j = arg;
  j->cb(j->arg, j->rc, j->rc ? j->err : NULL);
  free(j->key);
  free(j->tmpdir);
  free(j);
}

static void on_put(void *arg, int status, const char *err) {
  struct put_job *j = arg;
  j->rc = status;
  if (status)
    snprintf(j->err, sizeof(j->err), "%s", err ? err : err_str(status));
  loop_work_submit(close_work, on_closed, j);
}

static void on_encrypted(void *arg, int status) {
  struct put_job *j = arg;
  if (status && !j->rc) {
    j->rc = ERR_CANCELED;
    snprintf(j->err, sizeof(j->err), "%s: encryption job failed", j->key);
  }
  if (j->rc) {
    loop_work_submit(close_work, on_closed, j);
    return;
  }
  struct payload p = {NULL, j->fd, 0, j->size};
  backend_put(j->b, j->key, &p, on_put, j);
}

void codec_put_fd(struct backend *b, const char *key, int fd, int64_t len,
                  const char *tmpdir, backend_cb cb, void *arg) {
  if (!codec_encrypts(b)) {
    struct payload p = {NULL, fd, 0, len};
    backend_put(b, key, &p, cb, arg);
    return;
  }
  struct put_job *j = xcalloc(1, sizeof(*j));
  j->b = b;
  j->key = xstrdup(key);
  j->in_fd = fd;
  j->len = len;
  j->tmpdir = xstrdup(tmpdir);
  j->fd = -1;
  j->cb = cb;
  j->arg = arg;
  loop_work_submit(encrypt_work, on_encrypted, j);
}
