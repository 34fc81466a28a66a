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

#include <stdint.h>

#include "backends/backend.h"
#include "base/util.h"

#define MAX_WINDOW 4
#define OUT_MODE 0600
#define DIR_MODE 0700

struct codec_dec;
struct fetch;

struct chunk {
  struct fetch *f;
  struct buf buf;
  struct sink sink;
  int64_t no; /* chunk number */
  int fetched;
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
};

/* Starts fetching key (stored size `size`, -1 if unknown) into out_fd at
 * out_off: one GET up to whole_max bytes, else `window` ranges of `chunk`
 * bytes at a time; tmp_path is used only for large objects on backends
 * without ranged GETs.  f->owner, post, done (and writeback) are set by
 * the caller first; done runs on the loop once, with f->status. */
void fetch_start(struct fetch *f, struct backend *b, const char *key,
                 int64_t size, int out_fd, int64_t out_off, int64_t whole_max,
                 int64_t chunk, int window, const char *tmp_path);
void fetch_destroy(struct fetch *f);
/* For post functions (pool thread): the first failure is kept. */
void job_fail(struct fetch *f, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* strerror is not thread-safe; pool threads use this. */
const char *errtext(int code, char *buf, size_t n);

#endif
