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
/* Buffers kept for reuse.                                             */

void bufpool_init(struct bufpool *bp, size_t max) {
  memset(bp, 0, sizeof(*bp));
  pthread_mutex_init(&bp->mu, NULL);
  bp->max = max;
}

void bufpool_destroy(struct bufpool *bp) {
  for (size_t i = 0; i < bp->n; i++)
    free(bp->v[i].p);
  free(bp->v);
  pthread_mutex_destroy(&bp->mu);
  memset(bp, 0, sizeof(*bp));
}

uint8_t *bufpool_get(struct bufpool *bp, size_t want, size_t *cap) {
  if (bp) {
    pthread_mutex_lock(&bp->mu);
    size_t best = bp->n;
    for (size_t i = 0; i < bp->n; i++)
      if (bp->v[i].cap >= want &&
          (best == bp->n || bp->v[i].cap < bp->v[best].cap))
        best = i;
    if (best < bp->n) {
      uint8_t *p = bp->v[best].p;
      *cap = bp->v[best].cap;
      bp->bytes -= *cap;
      bp->v[best] = bp->v[--bp->n];
      pthread_mutex_unlock(&bp->mu);
      return p;
    }
    pthread_mutex_unlock(&bp->mu);
  }
  *cap = MAX(want, (size_t)1);
  return xmalloc(*cap);
}

void bufpool_put(struct bufpool *bp, uint8_t *p, size_t cap) {
  if (!p)
    return;
  if (bp) {
    pthread_mutex_lock(&bp->mu);
    if (bp->bytes + cap <= bp->max) {
      if (bp->n == bp->alloc) {
        bp->alloc = bp->alloc ? bp->alloc * 2 : 16;
        bp->v = xrealloc(bp->v, bp->alloc * sizeof(*bp->v));
      }
      bp->v[bp->n++] = (struct bufpool_ent){p, cap};
      bp->bytes += cap;
      p = NULL;
    }
    pthread_mutex_unlock(&bp->mu);
  }
  free(p);
}

/* A chunk's buffer holds at least want bytes, taken from the pool when it
 * has none yet. */
static void chunk_buf(struct fetch *f, struct buf *b, size_t want) {
  if (!b->data && f->pool && want)
    b->data = bufpool_get(f->pool, want, &b->cap);
}

/* ------------------------------------------------------------------ */
/* Fetching one object and decoding it into an fd.                     */

void fail_keep_first(int *status, char *err, size_t errlen, int code,
                     const char *fmt, va_list ap) {
  if (*status)
    return;
  *status = code;
  vsnprintf(err, errlen, fmt, ap);
}

static void fetch_fail(struct fetch *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fetch_fail(struct fetch *f, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_keep_first(&f->status, f->err, sizeof(f->err), code, fmt, ap);
  va_end(ap);
}

void job_fail(struct fetch *f, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_keep_first(&f->jstatus, f->jerr, sizeof(f->jerr), code, fmt, ap);
  va_end(ap);
}

/* Pool: the end of a decode job: a corrupt object, another failure (what
 * failed, then why), or the post check once the whole object is in. */
static void decode_result(struct fetch *f, int rc, const char *what, int last) {
  char tmp[128];
  if (codec_bad_object(rc))
    job_fail(f, rc, "%s: %s", f->key, err_str(rc));
  else if (rc)
    job_fail(f, rc, "%s: %s: %s", f->key, what, errtext(rc, tmp, sizeof(tmp)));
  else if (last && f->post)
    f->post(f);
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
  for (int i = 0; i < MAX_WINDOW; i++) {
    bufpool_put(f->pool, f->chunks[i].buf.data, f->chunks[i].buf.cap);
    f->chunks[i].buf.data = NULL;
    buf_destroy(&f->chunks[i].buf);
  }
  codec_dec_free(f->dec);
  f->dec = NULL;
  for (int i = 0; i < MAX_BLOCKS; i++) {
    bufpool_put(f->pool, f->blk[i].out, f->blk[i].out_cap);
    bufpool_put(f->pool, f->blk[i].gather, f->blk[i].gather_cap);
    f->blk[i].out = f->blk[i].gather = NULL;
    f->blk[i].out_cap = f->blk[i].gather_cap = 0;
  }
  f->done(f);
}

/* Pool: feed one chunk; after the last, end the frame and run post. */
static void decode_work(void *arg) {
  struct chunk *c = arg;
  struct fetch *f = c->f;
  int rc = codec_dec_feed(f->dec, c->buf.data, c->buf.len);
  /* Start writing back what was decoded, so the final fsync of a large
   * database does not wait for all of it at once. */
  if (!rc && f->writeback)
    sync_file_range(f->out_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  if (!rc && c->no == f->nchunks - 1)
    rc = codec_dec_end(f->dec, &f->out_len);
  decode_result(f, rc, "cannot write decoded data", c->no == f->nchunks - 1);
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
  if (!status && f->fetched)
    *f->fetched += (int64_t)c->buf.len;
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

/* ------------------------------------------------------------------ */
/* Block mode: independent LZ4 blocks decoded in parallel.             */

enum { P_MAGIC, P_BLOCK };

/* Offset just past chunk `no` in the object. */
static int64_t chunk_end(const struct fetch *f, int64_t no) {
  if (!f->chunk_size)
    return (int64_t)f->chunks[0].buf.len;
  return MIN((no + 1) * f->chunk_size, f->size);
}

/* Object length once known (whole GET: when it arrived). */
static int64_t obj_len(const struct fetch *f) {
  if (f->chunk_size)
    return f->size;
  return f->chunks[0].fetched ? (int64_t)f->chunks[0].buf.len : -1;
}

/* Bytes of the object available from its start (fetched chunks with no
 * gap), at least up to the parser. */
static int64_t avail_end(const struct fetch *f) {
  int64_t end = f->next_dec ? chunk_end(f, f->next_dec - 1) : 0;
  for (int64_t no = f->next_dec; no < f->next_get; no++) {
    const struct chunk *c = &f->chunks[no % f->window];
    if (c->no != no || !c->fetched)
      break;
    end = chunk_end(f, no);
  }
  return end;
}

static struct chunk *chunk_at(struct fetch *f, int64_t pos, size_t *off) {
  int64_t no = f->chunk_size ? pos / f->chunk_size : 0;
  *off = (size_t)(pos - (f->chunk_size ? no * f->chunk_size : 0));
  return &f->chunks[no % f->window];
}

/* Copies n bytes at pos (all available) to dst. */
static void peek(struct fetch *f, int64_t pos, size_t n, uint8_t *dst) {
  while (n) {
    size_t off;
    struct chunk *c = chunk_at(f, pos, &off);
    size_t k = MIN(n, c->buf.len - off);
    memcpy(dst, c->buf.data + off, k);
    dst += k;
    n -= k;
    pos += (int64_t)k;
  }
}

static uint32_t peek32(struct fetch *f, int64_t pos) {
  uint8_t b[4];
  peek(f, pos, 4, b);
  return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
         (uint32_t)b[3] << 24;
}

static void blk_fail(struct blk *b, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void blk_fail(struct blk *b, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_keep_first(&b->status, b->err, sizeof(b->err), code, fmt, ap);
  va_end(ap);
}

/* Pool: gathers a block split across two chunks, checks its checksum and
 * decodes it into the slot's buffer. */
static void blk_decode_work(void *arg) {
  struct blk *b = arg;
  const uint8_t *src = b->p[0];
  size_t n = b->n[0];
  if (b->p[1]) {
    if (b->gather_cap < n + b->n[1]) {
      bufpool_put(b->f->pool, b->gather, b->gather_cap);
      b->gather = bufpool_get(b->f->pool, b->block_max, &b->gather_cap);
    }
    memcpy(b->gather, b->p[0], b->n[0]);
    memcpy(b->gather + b->n[0], b->p[1], b->n[1]);
    src = b->gather;
    n += b->n[1];
  }
  if (b->has_bsum) {
    struct xxh32 h;
    xxh32_init(&h);
    xxh32_update(&h, src, n);
    if (xxh32_digest(&h) != b->bsum) {
      blk_fail(b, ERR_LZ4, "%s: %s (block checksum)", b->f->key,
               err_str(ERR_LZ4));
      return;
    }
  }
  if (b->out_cap < b->block_max) {
    bufpool_put(b->f->pool, b->out, b->out_cap);
    b->out = bufpool_get(b->f->pool, b->block_max, &b->out_cap);
  }
  if (lz4_block_decode(src, n, b->stored, b->out, b->block_max, &b->out_len))
    blk_fail(b, ERR_LZ4, "%s: %s", b->f->key, err_str(ERR_LZ4));
}

/* Pool: writes a decoded block at its offset (blocks are written in
 * parallel once the sizes of the ones before them are known). */
static void blk_write_work(void *arg) {
  struct blk *b = arg;
  struct fetch *f = b->f;
  char tmp[128];
  int rc = pwrite_full(f->out_fd, b->out, b->out_len, (off_t)b->off);
  if (rc) {
    blk_fail(b, rc, "%s: cannot write decoded data: %s", f->key,
             errtext(rc, tmp, sizeof(tmp)));
    return;
  }
  if (f->writeback)
    sync_file_range(f->out_fd, (off_t)b->off, (off_t)b->out_len,
                    SYNC_FILE_RANGE_WRITE);
}

/* Pool, one at a time in block order: the content checksum, updated with
 * each block and checked at each frame's end. */
static void blk_hash_work(void *arg) {
  struct blk *b = arg;
  struct fetch *f = b->f;
  if (!b->end) {
    if (b->hash_it)
      xxh32_update(&f->hash, b->out, b->out_len);
    /* A sink takes the content in order, one call at a time: here, where
     * the blocks pass one by one in order.  Its failure (in f->jerr) is
     * reported at the frame's end, unless the frame's content checksum
     * fails there: a corrupt object is named as such, not by what its
     * garbage made the sink see. */
    int rc = f->sink && b->out_len && !f->sink_rc
                 ? f->sink(f->sink_arg, b->out, b->out_len)
                 : 0;
    if (rc) {
      char tmp[128];
      job_fail(f, rc, "%s: %s", f->key, errtext(rc, tmp, sizeof(tmp)));
      f->sink_rc = rc;
    }
    return;
  }
  if (b->has_csum && xxh32_digest(&f->hash) != b->csum)
    b->hstatus = ERR_LZ4;
  xxh32_init(&f->hash);
}

static void blk_unref(struct fetch *f, struct blk *b) {
  for (int i = 0; i < 2; i++)
    if (b->chunk[i] >= 0)
      f->chunk_refs[b->chunk[i] % f->window]--;
  b->chunk[0] = b->chunk[1] = -1;
  b->p[0] = b->p[1] = NULL;
}

/* Loop, after a pool job of block b. */
static void blk_merge(struct fetch *f, struct blk *b, int status) {
  f->pending--;
  if (status)
    fetch_fail(f, status, "%s: pool job failed", f->key);
  else if (b->status)
    fetch_fail(f, b->status, "%s", b->err);
}

static void on_blk_decoded(void *arg, int status) {
  struct blk *b = arg;
  struct fetch *f = b->f;
  blk_merge(f, b, status);
  blk_unref(f, b);
  b->state = BLK_DECODED;
  fetch_pump(f);
}

static void on_blk_written(void *arg, int status) {
  struct blk *b = arg;
  struct fetch *f = b->f;
  blk_merge(f, b, status);
  b->written = 1;
  fetch_pump(f);
}

static void on_blk_hashed(void *arg, int status) {
  struct blk *b = arg;
  struct fetch *f = b->f;
  f->pending--;
  f->hashing = 0;
  if (status)
    job_merge(f, status);
  else if (b->hstatus)
    fetch_fail(f, b->hstatus, "%s: %s (content checksum)", f->key,
               err_str(b->hstatus));
  else if (f->sink_rc && (b->end || !b->hash_it))
    job_merge(f, 0); /* the sink's failure */
  b->hashed = 1;
  f->next_hash++;
  fetch_pump(f);
}

static void blk_final_work(void *arg) {
  struct fetch *f = arg;
  f->out_len = f->assigned;
  if (f->post)
    f->post(f);
}

static void on_blk_final(void *arg, int status) {
  struct fetch *f = arg;
  f->pending--;
  job_merge(f, status);
  fetch_pump(f);
}

/* Adds the block of n bytes at pos (all fetched) and starts decoding it. */
static void blk_add(struct fetch *f, int64_t pos, size_t n, int stored,
                    int has_bsum, uint32_t bsum) {
  struct blk *b = &f->blk[f->next_blk++ % f->max_blocks];
  b->f = f;
  b->end = 0;
  b->status = b->hstatus = 0;
  b->written = b->hashed = 0;
  b->stored = stored;
  b->has_bsum = has_bsum;
  b->bsum = bsum;
  b->hash_it = f->fi.content_sum;
  b->block_max = f->fi.block_max;
  b->chunk[0] = b->chunk[1] = -1;
  b->p[0] = b->p[1] = NULL;
  b->n[0] = b->n[1] = 0;
  for (int i = 0; i < 2 && n; i++) {
    size_t off;
    struct chunk *c = chunk_at(f, pos, &off);
    size_t k = MIN(n, c->buf.len - off);
    b->p[i] = c->buf.data + off;
    b->n[i] = k;
    b->chunk[i] = c->no;
    f->chunk_refs[c->no % f->window]++;
    pos += (int64_t)k;
    n -= k;
  }
  b->state = BLK_DECODING;
  f->pending++;
  loop_work_submit(blk_decode_work, on_blk_decoded, b);
}

static void blk_add_end(struct fetch *f, int has_csum, uint32_t csum) {
  struct blk *b = &f->blk[f->next_blk++ % f->max_blocks];
  b->f = f;
  b->end = 1;
  b->status = b->hstatus = 0;
  b->written = b->hashed = 0;
  b->out_len = 0;
  b->has_csum = has_csum;
  b->csum = csum;
  b->has_size = f->fi.has_size;
  b->csize = f->fi.content_size;
  b->chunk[0] = b->chunk[1] = -1;
  b->p[0] = b->p[1] = NULL;
  b->state = BLK_DECODED;
}

/* Loop: reads headers as far as the fetched bytes and free slots allow.
 * Returns 1 to switch to the one-context decoder (first frame not made of
 * independent blocks, or not a plain LZ4 frame at all). */
static int blk_parse(struct fetch *f) {
  int64_t avail = avail_end(f), olen = obj_len(f);
  int complete = olen >= 0 && avail == olen;
  while (!f->status && !f->parse_done) {
    int64_t left = MAX(avail - f->ppos, (int64_t)0);
    if (olen >= 0 && f->ppos > olen) {
      fetch_fail(f, ERR_LZ4, "%s: %s (truncated)", f->key, err_str(ERR_LZ4));
      break;
    }
    if (f->pstate == P_MAGIC) {
      if (olen >= 0 && f->ppos == olen) {
        if (!f->frames)
          return 1;
        f->parse_done = 1;
        break;
      }
      uint8_t h[LZ4_FRAME_HEADER_MAX];
      size_t k = (size_t)MIN(left, (int64_t)sizeof(h));
      if (k < 4 && !complete)
        break;
      peek(f, f->ppos, k, h);
      uint32_t magic = k >= 4 ? (uint32_t)h[0] | (uint32_t)h[1] << 8 |
                                    (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24
                              : 0;
      if (f->frames && (magic & 0xFFFFFFF0u) == LZ4_SKIP_MAGIC) {
        if (k < 8 && !complete)
          break;
        if (k < 8) {
          fetch_fail(f, ERR_LZ4, "%s: %s", f->key, err_str(ERR_LZ4));
          break;
        }
        f->ppos += 8 + (int64_t)peek32(f, f->ppos + 4);
        continue;
      }
      int r = lz4_frame_header(h, k, &f->fi);
      if (r == 0 && !complete)
        break;
      /* A block (with its size word and checksum) must fit in two
       * chunks. */
      if (r <= 0 || !f->fi.indep || f->fi.has_dict ||
          (f->chunk_size && f->chunk_size < (int64_t)f->fi.block_max + 8)) {
        if (!f->frames)
          return 1;
        fetch_fail(f, ERR_LZ4, "%s: %s", f->key, err_str(ERR_LZ4));
        break;
      }
      f->frames++;
      f->ppos += r;
      f->pstate = P_BLOCK;
      continue;
    }
    if (f->next_blk - f->next_done >= f->max_blocks)
      break;
    if (left < 4) {
      if (complete)
        fetch_fail(f, ERR_LZ4, "%s: %s (truncated)", f->key, err_str(ERR_LZ4));
      break;
    }
    uint32_t v = peek32(f, f->ppos);
    if (v == 0) {
      int cs = f->fi.content_sum;
      if (left < 4 + (cs ? 4 : 0)) {
        if (complete)
          fetch_fail(f, ERR_LZ4, "%s: %s (truncated)", f->key,
                     err_str(ERR_LZ4));
        break;
      }
      blk_add_end(f, cs, cs ? peek32(f, f->ppos + 4) : 0);
      f->ppos += 4 + (cs ? 4 : 0);
      f->pstate = P_MAGIC;
      continue;
    }
    size_t n = v & 0x7FFFFFFFu;
    int64_t total = 4 + (int64_t)n + (f->fi.block_sum ? 4 : 0);
    if (n > f->fi.block_max) {
      fetch_fail(f, ERR_LZ4, "%s: %s", f->key, err_str(ERR_LZ4));
      break;
    }
    if (left < total) {
      if (complete)
        fetch_fail(f, ERR_LZ4, "%s: %s (truncated)", f->key, err_str(ERR_LZ4));
      break;
    }
    uint32_t bsum = f->fi.block_sum ? peek32(f, f->ppos + 4 + (int64_t)n) : 0;
    blk_add(f, f->ppos + 4, n, (int)(v >> 31), f->fi.block_sum, bsum);
    f->ppos += total;
  }
  return 0;
}

/* Loop: releases chunks the parser is past and no block refers to, in
 * order, so their slots take the next GETs. */
static void blk_release(struct fetch *f) {
  while (f->next_dec < f->nchunks) {
    struct chunk *c = &f->chunks[f->next_dec % f->window];
    if (c->no != f->next_dec || !c->fetched ||
        f->chunk_refs[f->next_dec % f->window] ||
        f->ppos < chunk_end(f, f->next_dec))
      break;
    c->fetched = 0;
    buf_reset(&c->buf);
    f->next_dec++;
  }
}

/* Loop: the block-mode half of fetch_pump (after the GETs were sent).
 * Returns 1 when it switched to the one-context decoder. */
static void send_gets(struct fetch *f);

/* One pass: parse, release chunks, send GETs, give out offsets, hash,
 * free slots; 1 if anything moved. */
static int blk_step(struct fetch *f, int *switched) {
  int64_t before[] = {f->ppos,     f->next_dec, f->next_get,
                      f->next_blk, f->next_off, f->next_done};
  if (blk_parse(f)) {
    *switched = 1;
    return 0;
  }
  blk_release(f);
  if (f->status)
    return 0;
  send_gets(f);
  /* Offsets, in order, as the blocks before are decoded. */
  while (f->next_off < f->next_blk) {
    struct blk *b = &f->blk[f->next_off % f->max_blocks];
    if (b->state != BLK_DECODED)
      break;
    b->state = BLK_WRITING;
    f->next_off++;
    if (b->end) {
      if (b->has_size && (uint64_t)f->frame_total != b->csize)
        fetch_fail(f, ERR_LZ4, "%s: %s (content size)", f->key,
                   err_str(ERR_LZ4));
      f->frame_total = 0;
      b->written = 1;
      continue;
    }
    b->off = f->out_off + f->assigned;
    f->assigned += (int64_t)b->out_len;
    f->frame_total += (int64_t)b->out_len;
    if (f->sink) { /* given to the sink by its hash job */
      b->written = 1;
      continue;
    }
    f->pending++;
    loop_work_submit(blk_write_work, on_blk_written, b);
  }
  if (f->status)
    return 0;
  struct blk *h = &f->blk[f->next_hash % f->max_blocks];
  if (!f->hashing && f->next_hash < f->next_off) {
    f->hashing = 1;
    f->pending++;
    loop_work_submit(blk_hash_work, on_blk_hashed, h);
  }
  /* Slots are reused in order once written and hashed. */
  while (f->next_done < f->next_hash) {
    struct blk *b = &f->blk[f->next_done % f->max_blocks];
    if (!b->written || !b->hashed)
      break;
    b->state = BLK_FREE;
    f->next_done++;
  }
  int64_t after[] = {f->ppos,     f->next_dec, f->next_get,
                     f->next_blk, f->next_off, f->next_done};
  return !f->status && memcmp(before, after, sizeof(before));
}

static int blk_pump(struct fetch *f) {
  int switched = 0;
  while (!f->status && blk_step(f, &switched))
    ;
  if (switched) {
    f->bmode = 0;
    return 1;
  }
  if (f->status)
    return 0;
  if (f->parse_done && f->next_done == f->next_blk && !f->pending &&
      !f->final_sent) {
    f->final_sent = 1;
    f->pending++;
    loop_work_submit(blk_final_work, on_blk_final, f);
  }
  return 0;
}

static void send_gets(struct fetch *f) {
  while (f->next_get < f->nchunks && f->next_get < f->next_dec + f->window) {
    struct chunk *c = &f->chunks[f->next_get % f->window];
    c->no = f->next_get++;
    c->fetched = 0;
    int64_t off = 0, len = -1;
    if (f->chunk_size) {
      off = c->no * f->chunk_size;
      len = MIN(f->chunk_size, f->size - off);
      chunk_buf(f, &c->buf, (size_t)f->chunk_size);
    }
    f->pending++;
    backend_get(f->b, f->key, off, len, &c->sink, on_chunk, c);
  }
}

static void fetch_pump(struct fetch *f) {
  if (f->finished)
    return;
  if (f->status) {
    if (!f->pending)
      fetch_finish(f);
    return;
  }
  if (f->bmode) {
    if (f->final_sent) {
      if (!f->pending)
        fetch_finish(f);
      return;
    }
    if (!blk_pump(f)) {
      if (f->status && !f->pending)
        fetch_finish(f);
      return;
    }
    /* Not a frame of independent blocks: nothing was decoded or
     * released yet, so the one-context decoder takes over from here. */
  }
  if (f->next_dec == f->nchunks) {
    if (!f->pending)
      fetch_finish(f);
    return;
  }
  send_gets(f);
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
  decode_result(f, rc, "cannot decode", 1);
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
  if (f->fetched)
    *f->fetched += MAX(f->size, (int64_t)0);
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
  f->max_blocks = MAX_BLOCKS;
  if (f->sink) /* a few decoded ahead of the sink, which runs in order */
    f->max_blocks = MIN(MAX_BLOCKS, 3);
  f->dec = f->sink ? codec_dec_new_sink(b, f->sink, f->sink_arg)
                   : codec_dec_new(b, out_fd, out_off);
  xxh32_init(&f->hash);
  for (int i = 0; i < MAX_WINDOW; i++) {
    f->chunks[i].f = f;
    buf_init(&f->chunks[i].buf, 0);
    f->chunks[i].sink.buf = &f->chunks[i].buf;
    f->chunks[i].sink.fd = -1;
  }
  if (size >= 0 && size <= whole_max) {
    /* One GET; the cap guards against an object that grew meanwhile. */
    f->chunks[0].buf.max = (size_t)(whole_max * 2);
    chunk_buf(f, &f->chunks[0].buf, (size_t)size);
    buf_reserve(&f->chunks[0].buf, (size_t)size);
    f->nchunks = 1;
    f->window = 1;
    f->bmode = f->blocks;
  } else if (size > 0 && (b->ops->caps & BACKEND_CAP_RANGE)) {
    f->chunk_size = chunk;
    f->window = window;
    f->nchunks = (size + chunk - 1) / chunk;
    for (int i = 0; i < window; i++)
      f->chunks[i].buf.max = (size_t)chunk;
    f->bmode = f->blocks;
  } else {
    f->tmp_path = xstrdup(tmp_path);
    f->pending++;
    loop_work_submit(tmp_open_work, on_tmp_opened, f);
    return;
  }
  fetch_pump(f);
}

void fetch_cancel(struct fetch *f) {
  if (f->b && !f->finished && f->pending > 0)
    fetch_fail(f, ERR_CANCELED, "%s: canceled", f->key);
}

void fetch_destroy(struct fetch *f) {
  free(f->key);
  free(f->tmp_path);
  memset(f, 0, sizeof(*f));
}
