#include "core/restore_fetch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "core/codec.h"
#include "format/lz4frame.h"
#include "loop/loop.h"

const char *errtext(int code, char *buf, size_t n) {
  if (code < 0 && code > -4096)
    return strerror_r(-code, buf, n);
  return err_str(code);
}

/* ------------------------------------------------------------------ */
/* Fetching one object and decoding it into an fd.                     */

static void fetch_fail(struct fetch *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fetch_fail(struct fetch *f, int code, const char *fmt, ...) {
  if (f->status)
    return;
  f->status = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->err, sizeof(f->err), fmt, ap);
  va_end(ap);
}

void job_fail(struct fetch *f, int code, const char *fmt, ...) {
  if (f->jstatus)
    return;
  f->jstatus = code;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->jerr, sizeof(f->jerr), fmt, ap);
  va_end(ap);
}

/* Loop thread, after a pool job of this fetch. */
static void job_merge(struct fetch *f, int status) {
  if (status)
    fetch_fail(f, status, "%s: pool job failed", f->key);
  else if (f->jstatus)
    fetch_fail(f, f->jstatus, "%s", f->jerr);
}

static void fetch_pump(struct fetch *f);

static void fetch_finish(struct fetch *f) {
  f->finished = 1;
  for (int i = 0; i < MAX_WINDOW; i++)
    buf_destroy(&f->chunks[i].buf);
  codec_dec_free(f->dec);
  f->dec = NULL;
  f->done(f);
}

/* Pool: feed one chunk; after the last, end the frame and run post. */
static void decode_work(void *arg) {
  struct chunk *c = arg;
  struct fetch *f = c->f;
  char tmp[128];
  int rc = codec_dec_feed(f->dec, c->buf.data, c->buf.len);
  /* Start writing back what was decoded, so the final fsync of a large
   * database does not wait for all of it at once. */
  if (!rc && f->writeback)
    sync_file_range(f->out_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  if (!rc && c->no == f->nchunks - 1)
    rc = codec_dec_end(f->dec, &f->out_len);
  if (codec_bad_object(rc))
    job_fail(f, rc, "%s: %s", f->key, err_str(rc));
  else if (rc)
    job_fail(f, rc, "%s: cannot write decoded data: %s", f->key,
             errtext(rc, tmp, sizeof(tmp)));
  else if (c->no == f->nchunks - 1 && f->post)
    f->post(f);
}

static void on_decoded(void *arg, int status) {
  struct chunk *c = arg;
  struct fetch *f = c->f;
  f->pending--;
  f->decoding = 0;
  job_merge(f, status);
  c->fetched = 0;
  buf_reset(&c->buf);
  f->next_dec++;
  fetch_pump(f);
}

static void on_chunk(void *arg, int status, const char *err) {
  struct chunk *c = arg;
  struct fetch *f = c->f;
  f->pending--;
  if (status) {
    fetch_fail(f, status, "%s", err ? err : err_str(status));
  } else if (f->chunk_size) {
    int64_t want = MIN(f->chunk_size, f->size - c->no * f->chunk_size);
    if ((int64_t)c->buf.len != want)
      fetch_fail(f, ERR_CORRUPT,
                 "%s: got %zu bytes at offset %" PRId64 ", expected %" PRId64
                 " (object changed during restore?)",
                 f->key, c->buf.len, c->no * f->chunk_size, want);
  }
  c->fetched = 1;
  fetch_pump(f);
}

static void fetch_pump(struct fetch *f) {
  if (f->finished)
    return;
  if (f->status) {
    if (!f->pending)
      fetch_finish(f);
    return;
  }
  if (f->next_dec == f->nchunks) {
    if (!f->pending)
      fetch_finish(f);
    return;
  }
  while (f->next_get < f->nchunks && f->next_get < f->next_dec + f->window) {
    struct chunk *c = &f->chunks[f->next_get % f->window];
    c->no = f->next_get++;
    c->fetched = 0;
    int64_t off = 0, len = -1;
    if (f->chunk_size) {
      off = c->no * f->chunk_size;
      len = MIN(f->chunk_size, f->size - off);
    }
    f->pending++;
    backend_get(f->b, f->key, off, len, &c->sink, on_chunk, c);
  }
  struct chunk *c = &f->chunks[f->next_dec % f->window];
  if (!f->decoding && c->fetched && c->no == f->next_dec) {
    f->decoding = 1;
    f->pending++;
    loop_work_submit(decode_work, on_decoded, c);
  }
}

/* --- large objects on backends without ranged GETs --- */

static void tmp_open_work(void *arg) {
  struct fetch *f = arg;
  char tmp[128];
  f->tmp_fd =
      open(f->tmp_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, OUT_MODE);
  if (f->tmp_fd < 0)
    job_fail(f, -errno, "%s: %s", f->tmp_path,
             errtext(-errno, tmp, sizeof(tmp)));
}

static void tmp_decode_work(void *arg) {
  struct fetch *f = arg;
  char tmp[128];
  uint8_t *in = xmalloc(1 << 20);
  int64_t pos = 0;
  int rc = 0;
  for (;;) {
    ssize_t r = pread_full(f->tmp_fd, in, 1 << 20, (off_t)pos);
    if (r < 0) {
      rc = (int)r;
      break;
    }
    if (r == 0)
      break;
    pos += r;
    if ((rc = codec_dec_feed(f->dec, in, (size_t)r)))
      break;
  }
  free(in);
  if (!rc)
    rc = codec_dec_end(f->dec, &f->out_len);
  close(f->tmp_fd);
  f->tmp_fd = -1;
  unlink(f->tmp_path);
  if (codec_bad_object(rc))
    job_fail(f, rc, "%s: %s", f->key, err_str(rc));
  else if (rc)
    job_fail(f, rc, "%s: cannot decode: %s", f->key,
             errtext(rc, tmp, sizeof(tmp)));
  else if (f->post)
    f->post(f);
}

static void on_tmp_decoded(void *arg, int status) {
  struct fetch *f = arg;
  f->pending--;
  job_merge(f, status);
  fetch_finish(f);
}

static void tmp_close_work(void *arg) {
  struct fetch *f = arg;
  if (f->tmp_fd >= 0)
    close(f->tmp_fd);
  f->tmp_fd = -1;
  unlink(f->tmp_path);
}

static void on_tmp_closed(void *arg, int status) {
  (void)status;
  struct fetch *f = arg;
  f->pending--;
  fetch_finish(f);
}

static void on_tmp_got(void *arg, int status, const char *err) {
  struct fetch *f = arg;
  f->pending--;
  f->pending++;
  if (status) {
    fetch_fail(f, status, "%s", err ? err : err_str(status));
    loop_work_submit(tmp_close_work, on_tmp_closed, f);
    return;
  }
  loop_work_submit(tmp_decode_work, on_tmp_decoded, f);
}

static void on_tmp_opened(void *arg, int status) {
  struct fetch *f = arg;
  f->pending--;
  job_merge(f, status);
  if (f->status) {
    fetch_finish(f);
    return;
  }
  f->tmp_sink.fd = f->tmp_fd;
  f->tmp_sink.off = 0;
  f->pending++;
  backend_get(f->b, f->key, 0, -1, &f->tmp_sink, on_tmp_got, f);
}

void fetch_start(struct fetch *f, struct backend *b, const char *key,
                 int64_t size, int out_fd, int64_t out_off, int64_t whole_max,
                 int64_t chunk, int window, const char *tmp_path) {
  f->b = b;
  f->key = xstrdup(key);
  f->size = size;
  f->out_fd = out_fd;
  f->out_off = out_off;
  f->tmp_fd = -1;
  f->dec = codec_dec_new(b, out_fd, out_off);
  for (int i = 0; i < MAX_WINDOW; i++) {
    f->chunks[i].f = f;
    buf_init(&f->chunks[i].buf, 0);
    f->chunks[i].sink.buf = &f->chunks[i].buf;
    f->chunks[i].sink.fd = -1;
  }
  if (size >= 0 && size <= whole_max) {
    /* One GET; the cap guards against an object that grew meanwhile. */
    f->chunks[0].buf.max = (size_t)(whole_max * 2);
    buf_reserve(&f->chunks[0].buf, (size_t)size);
    f->nchunks = 1;
    f->window = 1;
  } else if (size > 0 && (b->ops->caps & BACKEND_CAP_RANGE)) {
    f->chunk_size = chunk;
    f->window = window;
    f->nchunks = (size + chunk - 1) / chunk;
    for (int i = 0; i < window; i++)
      f->chunks[i].buf.max = (size_t)chunk;
  } else {
    f->tmp_path = xstrdup(tmp_path);
    f->pending++;
    loop_work_submit(tmp_open_work, on_tmp_opened, f);
    return;
  }
  fetch_pump(f);
}

void fetch_destroy(struct fetch *f) {
  free(f->key);
  free(f->tmp_path);
  memset(f, 0, sizeof(*f));
}
