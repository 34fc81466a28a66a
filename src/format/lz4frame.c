#include "format/lz4frame.h"

#include <errno.h>
#include <lz4.h>
#include <lz4frame.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/err.h"
#include "format/lz4enc.h"

#define BLOCK LZ4ENC_BLOCK

int lz4_compress(const uint8_t *src, size_t n, struct buf *out) {
  size_t blocks = n / BLOCK + 1;
  size_t bound =
      LZ4ENC_HEADER + n + blocks * (LZ4ENC_BLOCK_BOUND(0) + 4) + LZ4ENC_TRAILER;
  int rc = buf_reserve(out, bound);
  if (rc)
    return rc;
  struct lz4_enc e;
  lz4_enc_init(&e);
  uint8_t *op = out->data + out->len;
  op += lz4_enc_begin(&e, op);
  for (size_t done = 0; done < n;) {
    size_t want = MIN((size_t)BLOCK, n - done);
    op += lz4_enc_block(&e, src + done, want, op);
    done += want;
  }
  op += lz4_enc_end(&e, op);
  out->len = (size_t)(op - out->data);
  lz4_enc_destroy(&e);
  return 0;
}

int lz4_compress_read(lz4_fill_fn fill, void *arg, int64_t len, int out_fd,
                      int64_t *out_len) {
  struct lz4_enc e;
  lz4_enc_init(&e);
  size_t cap = LZ4ENC_HEADER + LZ4ENC_BLOCK_BOUND(BLOCK) + LZ4ENC_TRAILER;
  uint8_t *in = xmalloc(BLOCK), *out = xmalloc(cap);
  int64_t total = 0, done = 0;
  int rc = write_full(out_fd, out, lz4_enc_begin(&e, out));
  total += LZ4ENC_HEADER;
  while (!rc && done < len) {
    size_t want = (size_t)MIN((int64_t)BLOCK, len - done);
    if ((rc = fill(arg, in, want, done)))
      break;
    size_t w = lz4_enc_block(&e, in, want, out);
    rc = write_full(out_fd, out, w);
    total += (int64_t)w;
    done += (int64_t)want;
  }
  if (!rc) {
    rc = write_full(out_fd, out, lz4_enc_end(&e, out));
    total += LZ4ENC_TRAILER;
  }
  if (!rc && out_len)
    *out_len = total;
  free(in);
  free(out);
  lz4_enc_destroy(&e);
  return rc;
}

struct fd_range {
  int fd;
  int64_t off;
};

static int fill_fd(void *arg, uint8_t *dst, size_t n, int64_t at) {
  const struct fd_range *r = arg;
  ssize_t got = pread_full(r->fd, dst, n, (off_t)(r->off + at));
  if (got < 0)
    return (int)got;
  return (size_t)got == n ? 0 : -EIO; /* file shrank while reading */
}

int lz4_compress_fd(int in_fd, int64_t in_off, int64_t len, int out_fd,
                    int64_t *out_len) {
  struct fd_range r = {in_fd, in_off};
  return lz4_compress_read(fill_fd, &r, len, out_fd, out_len);
}

/* Output of the decoder goes to a buffer or an fd. */
struct dec_out {
  struct buf *buf;
  int fd;
  int64_t off;
  int64_t total;
  lz4_sink_fn fn; /* if set, instead of buf and fd */
  void *fn_arg;
};

static int dec_emit(struct dec_out *o, const uint8_t *p, size_t n) {
  if (!n)
    return 0;
  int rc;
  if (o->fn)
    rc = o->fn(o->fn_arg, p, n);
  else if (o->buf)
    rc = buf_append(o->buf, p, n);
  else
    rc = pwrite_full(o->fd, p, n, (off_t)(o->off + o->total));
  if (!rc)
    o->total += (int64_t)n;
  return rc;
}

/* Feeds src to the decoder.  *hint is liblz4's expected-input hint: 0
 * once a frame is complete. */
static int dec_feed(LZ4F_dctx *ctx, const uint8_t *src, size_t n, uint8_t *tmp,
                    size_t tmpcap, struct dec_out *o, size_t *hint) {
  while (n > 0) {
    size_t in = n, outn = tmpcap;
    size_t r = LZ4F_decompress(ctx, tmp, &outn, src, &in, NULL);
    if (LZ4F_isError(r))
      return ERR_LZ4;
    int rc = dec_emit(o, tmp, outn);
    if (rc)
      return rc;
    src += in;
    n -= in;
    *hint = r;
    if (in == 0 && outn == 0)
      return ERR_LZ4; /* no progress */
  }
  /* Drain output still buffered inside the context.  A hint of 0 means
   * the frame is complete and flushed: asking again would report the
   * header size of a next frame and make a complete input look
   * truncated. */
  while (*hint != 0) {
    size_t in = 0, outn = tmpcap;
    size_t r = LZ4F_decompress(ctx, tmp, &outn, NULL, &in, NULL);
    if (LZ4F_isError(r))
      return ERR_LZ4;
    int rc = dec_emit(o, tmp, outn);
    if (rc)
      return rc;
    *hint = r;
    if (outn == 0)
      break;
  }
  return 0;
}

static int decompress_mem(const uint8_t *src, size_t n, struct dec_out *o) {
  LZ4F_dctx *ctx;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION)))
    return ERR_LZ4;
  size_t cap = 1u << 20;
  uint8_t *tmp = xmalloc(cap);
  size_t hint = 1;
  int rc = n == 0 ? ERR_LZ4 : dec_feed(ctx, src, n, tmp, cap, o, &hint);
  if (!rc && hint != 0)
    rc = ERR_LZ4; /* truncated frame */
  free(tmp);
  LZ4F_freeDecompressionContext(ctx);
  return rc;
}

int lz4_decompress(const uint8_t *src, size_t n, struct buf *out) {
  struct dec_out o = {out, -1, 0, 0, NULL, NULL};
  size_t before = out->len;
  int rc = decompress_mem(src, n, &o);
  if (rc)
    out->len = before;
  return rc;
}

int lz4_decompress_to_fd(const uint8_t *src, size_t n, int out_fd,
                         int64_t out_off, int64_t *out_len) {
  struct dec_out o = {NULL, out_fd, out_off, 0, NULL, NULL};
  int rc = decompress_mem(src, n, &o);
  if (!rc && out_len)
    *out_len = o.total;
  return rc;
}

int lz4_decompress_fd(int in_fd, int out_fd, int64_t *out_len) {
  LZ4F_dctx *ctx;
  if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION)))
    return ERR_LZ4;
  size_t incap = 1u << 20, cap = 4u << 20;
  uint8_t *in = xmalloc(incap), *tmp = xmalloc(cap);
  struct dec_out o = {NULL, out_fd, 0, 0, NULL, NULL};
  size_t hint = 1;
  int64_t pos = 0;
  int rc = 0, any = 0;
  for (;;) {
    ssize_t r = pread_full(in_fd, in, incap, (off_t)pos);
    if (r < 0) {
      rc = (int)r;
      break;
    }
    if (r == 0)
      break;
    any = 1;
    pos += r;
    if ((rc = dec_feed(ctx, in, (size_t)r, tmp, cap, &o, &hint)))
      break;
  }
  if (!rc && (!any || hint != 0))
    rc = ERR_LZ4;
  if (!rc && out_len)
    *out_len = o.total;
  free(in);
  free(tmp);
  LZ4F_freeDecompressionContext(ctx);
  return rc;
}

struct lz4_dec {
  LZ4F_dctx *ctx;
  uint8_t *tmp;
  size_t cap;
  struct dec_out out;
  size_t hint;
  int any;
};

struct lz4_dec *lz4_dec_new(int out_fd, int64_t out_off) {
  struct lz4_dec *d = xcalloc(1, sizeof(*d));
  if (LZ4F_isError(LZ4F_createDecompressionContext(&d->ctx, LZ4F_VERSION))) {
    fprintf(stderr, "lz4: cannot create a decompression context\n");
    abort(); /* only fails on allocation failure */
  }
  /* 4 MiB: the largest block, so liblz4 decodes straight into tmp. */
  d->cap = BLOCK;
  d->tmp = xmalloc(d->cap);
  d->out.fd = out_fd;
  d->out.off = out_off;
  d->hint = 1;
  return d;
}

struct lz4_dec *lz4_dec_new_sink(lz4_sink_fn fn, void *arg) {
  struct lz4_dec *d = lz4_dec_new(-1, 0);
  d->out.fn = fn;
  d->out.fn_arg = arg;
  return d;
}

int lz4_dec_feed(struct lz4_dec *d, const uint8_t *src, size_t n) {
  if (!n)
    return 0;
  d->any = 1;
  return dec_feed(d->ctx, src, n, d->tmp, d->cap, &d->out, &d->hint);
}

int lz4_dec_end(struct lz4_dec *d, int64_t *out_len) {
  if (!d->any || d->hint != 0)
    return ERR_LZ4;
  if (out_len)
    *out_len = d->out.total;
  return 0;
}

void lz4_dec_free(struct lz4_dec *d) {
  if (!d)
    return;
  LZ4F_freeDecompressionContext(d->ctx);
  free(d->tmp);
  free(d);
}

/* --- block-level access --- */

static uint32_t rd_le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

int lz4_frame_header(const uint8_t *p, size_t n, struct lz4_frame_info *fi) {
  if (n < 7)
    return 0;
  if (rd_le32(p) != LZ4_FRAME_MAGIC)
    return ERR_LZ4;
  uint8_t flg = p[4], bd = p[5];
  if ((flg >> 6) != 1 || (flg & 0x02) || (bd & 0x8F))
    return ERR_LZ4;
  memset(fi, 0, sizeof(*fi));
  fi->indep = !!(flg & 0x20);
  fi->block_sum = !!(flg & 0x10);
  fi->has_size = !!(flg & 0x08);
  fi->content_sum = !!(flg & 0x04);
  fi->has_dict = !!(flg & 0x01);
  int bs = (bd >> 4) & 7;
  if (bs < 4)
    return ERR_LZ4;
  fi->block_max = 1u << (8 + 2 * bs); /* 4: 64 KiB ... 7: 4 MiB */
  size_t len = 7 + (fi->has_size ? 8 : 0) + (fi->has_dict ? 4 : 0);
  if (n < len)
    return 0;
  if (fi->has_size) {
    fi->content_size = (uint64_t)rd_le32(p + 6) | (uint64_t)rd_le32(p + 10)
                                                      << 32;
  }
  struct xxh32 h;
  xxh32_init(&h);
  xxh32_update(&h, p + 4, len - 5);
  if (((xxh32_digest(&h) >> 8) & 0xFF) != p[len - 1])
    return ERR_LZ4;
  return (int)len;
}

int lz4_block_decode(const uint8_t *src, size_t n, int stored, uint8_t *dst,
                     size_t cap, size_t *out_len) {
  if (stored) {
    if (n > cap)
      return ERR_LZ4;
    memcpy(dst, src, n);
    *out_len = n;
    return 0;
  }
  if (n > (size_t)INT32_MAX || cap > (size_t)INT32_MAX)
    return ERR_LZ4;
  int r = LZ4_decompress_safe((const char *)src, (char *)dst, (int)n, (int)cap);
  if (r < 0)
    return ERR_LZ4;
  *out_len = (size_t)r;
  return 0;
}
