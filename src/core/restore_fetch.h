/*
 * Restore, part 1 of 3: fetching one object and LZ4-decoding it into an
 * fd, on the loop with decoding on the thread pool (restore.c drives it,
 * restore_plan.c decides what to fetch).
 *
 * A small object is one GET into memory; a large one on a backend with
 * ranged GETs is read as a window of fixed-size ranges in flight, decoded
 * in order as they arrive (decoding of range k overlaps the download of
 * k+1..k+window-1), so memory stays at window * chunk whatever the object
 * size; a large object on a backend without ranges is downloaded to a
 * temporary file first.  Private to src/core/restore*.c.
 */
#ifndef SLUICE_RESTORE_FETCH_H
#define SLUICE_RESTORE_FETCH_H

#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "backends/backend.h"
#include "base/util.h"
#include "format/lz4enc.h"
#include "format/lz4frame.h"

#define MAX_WINDOW 4
#define MAX_BLOCKS 6 /* LZ4 blocks decoded or waiting to be written */
#define OUT_MODE 0600
#define DIR_MODE 0700

struct codec_dec;
struct fetch;

/* Large buffers a restore gives back and takes again (object bodies,
 * decoded blocks, page stores), so each is mapped and faulted in once per
 * restore rather than once per object: up to `max` bytes kept, freed
 * with the restore.  Any thread. */
struct bufpool {
  pthread_mutex_t mu;
  struct bufpool_ent {
    uint8_t *p;
    size_t cap;
  } * v;
  size_t n, alloc;
  size_t bytes, max;
};
/* (Plain malloc: transparent huge pages made a restore on memory new to
 * the machine 2-3 times slower, the kernel zeroing fresh 2 MiB pages,
 * and gained a quarter only on memory used before: bench/RESULTS.md.) */
void bufpool_init(struct bufpool *bp, size_t max);
void bufpool_destroy(struct bufpool *bp);
/* A buffer of at least want bytes (*cap: its size); bp may be NULL. */
uint8_t *bufpool_get(struct bufpool *bp, size_t want, size_t *cap);
/* Gives p (cap bytes, or NULL) back; freed if bp is NULL or full. */
void bufpool_put(struct bufpool *bp, uint8_t *p, size_t cap);

struct chunk {
  struct fetch *f;
  struct buf buf;
  struct sink sink;
  int64_t no; /* chunk number */
  int fetched;
};

/* One LZ4 block of an object decoded in block mode (below), or the end
 * mark of a frame (end): its compressed bytes are one or two pieces of
 * chunk buffers, decoded on the pool into out, then written in order. */
enum blk_state { BLK_FREE, BLK_DECODING, BLK_DECODED, BLK_WRITING };

struct blk {
  struct fetch *f;
  enum blk_state state;
  int end;
  const uint8_t *p[2];
  size_t n[2];
  int64_t chunk[2]; /* chunk numbers referenced, -1 for none */
  int stored, has_bsum, hash_it;
  uint32_t bsum, block_max;
  int has_csum, has_size; /* end mark: what to check */
  uint32_t csum;
  uint64_t csize;
  uint8_t *out, *gather; /* kept for the next block in this slot */
  size_t out_cap, gather_cap, out_len;
  int64_t off; /* where out goes */
  int written, hashed;
  int status, hstatus;
  char err[256];
};

/* Runs on a pool thread after the object was decoded; returns 0 or an
 * error with a message in f->err. */
typedef int (*fetch_post_fn)(struct fetch *f);
typedef void (*fetch_done_fn)(struct fetch *f);

struct fetch {
  struct backend *b;
  char *key;
  int64_t size; /* stored size from the listing */
  int out_fd;
  int64_t out_off;
  fetch_post_fn post;
  fetch_done_fn done;
  void *owner;
  /* If set (before fetch_start), the decoded content goes to sink in
   * order instead of out_fd (pool threads, one call at a time). */
  lz4_sink_fn sink;
  void *sink_arg;
  int64_t *fetched;     /* if set, bytes downloaded are added here (loop) */
  struct bufpool *pool; /* if set, where the large buffers come from */

  int64_t chunk_size; /* 0: one GET of the whole object */
  int window;
  int writeback; /* kick off writeback as chunks are decoded */
  int64_t nchunks, next_get, next_dec;
  int decoding;
  int pending; /* GETs and pool jobs in flight */
  struct chunk chunks[MAX_WINDOW];
  struct codec_dec *dec;
  /* Large object without ranged GETs: a temporary file. */
  char *tmp_path;
  int tmp_fd;
  struct sink tmp_sink;

  int status;
  char err[1024];
  /* Written by the pool job in flight (one at a time), merged into
   * status/err on the loop thread when it is done. */
  int jstatus;
  char jerr[1024];
  int64_t out_len; /* decoded bytes, on success */
  int finished;

  /* Block mode (f->blocks set by the caller before fetch_start): a frame
   * of independent blocks is parsed on the loop as chunks arrive (a few
   * header bytes per block), its blocks are decoded on the pool in
   * parallel and written in order (pwrite at the running offset, the
   * content checksum updated), so decoding overlaps the downloads and
   * uses every core (with a sink, the blocks go to it in order instead of
   * being written).  Anything else (age, linked blocks) falls back to
   * the one-context decoder before anything was decoded. */
  int blocks;
  int bmode;
  int max_blocks; /* slots in use at once, up to MAX_BLOCKS */
  struct blk blk[MAX_BLOCKS];
  /* Block sequence numbers: next to parse, to get an offset, to hash,
   * to free. */
  int64_t next_blk, next_off, next_hash, next_done;
  int hashing;
  int sink_rc; /* the sink's failure (hash jobs), reported at a frame end */
  int chunk_refs[MAX_WINDOW];
  int pstate;
  int64_t ppos; /* parser position in the object */
  struct lz4_frame_info fi;
  int frames, parse_done, final_sent;
  int64_t assigned, frame_total; /* output offsets given out (loop) */
  struct xxh32 hash;             /* the hash job in flight only */
};

/* Starts fetching key (stored size `size`, -1 if unknown) into out_fd at
 * out_off: one GET up to whole_max bytes, else `window` ranges of `chunk`
 * bytes at a time; tmp_path is used only for large objects on backends
 * without ranged GETs.  f->owner, post, done (and writeback) are set by
 * the caller first; done runs on the loop once, with f->status. */
void fetch_start(struct fetch *f, struct backend *b, const char *key,
                 int64_t size, int out_fd, int64_t out_off, int64_t whole_max,
                 int64_t chunk, int window, const char *tmp_path);
/* A fetch in flight stops at its next step (done follows, ERR_CANCELED);
 * one not started or finished is left alone. */
void fetch_cancel(struct fetch *f);
void fetch_destroy(struct fetch *f);
/* Sets *status to code and err to the message unless *status is already
 * set (the first failure is the one reported). */
void fail_keep_first(int *status, char *err, size_t errlen, int code,
                     const char *fmt, va_list ap);
/* For post functions (pool thread): the first failure is kept. */
void job_fail(struct fetch *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* strerror is not thread-safe; pool threads use this. */
const char *errtext(int code, char *buf, size_t n);

#endif
