/*
 * Restore (spec 4), as a state machine on the loop.
 *
 *   list snapshots, list segments -> plan (snapshot, WAL indexes)
 *   prepare (pool): refuse an existing output, mkdir -p, create <out>.tmp
 *   snapshot: fetch + LZ4-decode into <out>.tmp            \  in parallel
 *   each WAL index i (up to `parallelism` at once): fetch   |
 *     its segments in offset order, check contiguity and,  |
 *     as they are decoded, salts, checksum chain and the   |
 *     final commit frame; keep the last version of each    |
 *     page (memory, then <out>.tmp-<i %08x>-wal)           /
 *   apply, strictly in index order once the snapshot is in: write the
 *     kept pages no later fetched index writes, cut the file to the
 *     commit's size (replay_sqlite, the tests' reference: the raw WAL in
 *     the staging file, renamed to <out>.tmp-wal and checkpointed by
 *     SQLite)
 *   integrity_check (pool), then rename <out>.tmp -> <out> (pool)
 * On failure every file created is removed before the callback.
 *
 * Object fetches (struct fetch) stream: a small object is one GET into
 * memory; a large one on a backend with ranged GETs is read as a window of
 * fixed-size ranges in flight, decoded in order as they arrive, so memory
 * stays at window * chunk whatever the object size; a large object on a
 * backend without ranges is downloaded to a temporary file first.
 */
#include "core/restore.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "format/lz4frame.h"
#include "core/restore_fetch.h"
#include "core/restore_plan.h"
#include "core/store.h"
#include "base/util.h"
#include "format/wal.h"
#include "loop/loop.h"

#define SNAP_WHOLE_MAX (16 << 20) /* one GET up to this size */
#define SNAP_CHUNK (8 << 20)
#define SNAP_WINDOW 4
#define SEG_WHOLE_MAX (16 << 20)
#define SEG_CHUNK (8 << 20) /* a 4 MiB block fits in two (block mode) */
#define SEG_WINDOW 2
/* Memory of a page store, per allocation (bufpool). */
#define PAGE_CHUNK (2 << 20)

/* ------------------------------------------------------------------ */
/* The restore.                                                        */

enum widx_state { WI_WAIT, WI_FETCHING, WI_READY, WI_APPLIED };

/* Where the last version of one page of a WAL index is kept. */
struct page_at {
  uint32_t pgno;
  uint32_t slot; /* in the index's page store, from 0 */
};

static int by_pgno(const void *a, const void *b) {
  uint32_t x = ((const struct page_at *)a)->pgno,
           y = ((const struct page_at *)b)->pgno;
  return x < y ? -1 : x > y;
}

/* One WAL index to replay. */
struct widx {
  struct restore *rs;
  uint32_t index;
  const struct segment_info *segs; /* borrowed from rs->segs */
  size_t n, next_seg;
  char *staging; /* <tmp>-<index>-wal */
  int fd;        /* staging: the raw WAL (replay_sqlite), else the pages
                    past mem_max */
  int created;
  int64_t end; /* bytes decoded so far = offset of the next segment */
  struct wal_scan scan;
  int have_hdr;
  /* Decoding (wal_sink, pool jobs of this index one at a time): each
   * frame is checked as it is decoded and its page kept, the last version
   * of each page overwriting the one before, so nothing is read back. */
  int64_t pos; /* bytes of the index decoded so far */
  uint8_t hdr[WAL_HEADER_SIZE];
  uint8_t *part; /* a frame split between two decoded pieces */
  size_t part_len;
  size_t fsize;    /* frame size */
  size_t per_mem;  /* pages per memory chunk */
  uint8_t **mem;   /* page store: slots 0 .. mem_max-1 in memory */
  size_t *mem_cap; /* (bytes of each, for the pool) */
  size_t mem_n;    /* chunks allocated */
  size_t mem_max;  /* slots kept in memory; the rest go to fd */
  size_t slots;    /* pages stored */
  enum widx_state state;
  struct fetch fetch;
  /* pool job results */
  int status;
  char err[1024];
  int64_t elapsed_ns;
  size_t pages; /* pages written by apply_pages_work */
  /* page -> its slot, built by wal_sink */
  struct page_at *map;
  size_t map_cap, map_used;
  /* Set on the loop before the apply: the later indexes already fetched
   * (their maps complete and unchanged until they are applied), whose
   * pages this index need not write. */
  struct widx **later;
  size_t n_later;
};

struct restore {
  struct backend *b;
  char gen[GEN_LEN + 1];
  char *db;
  struct restore_opts o;
  char *out, *tmp, *tmp_wal, *tmp_shm;
  restore_cb cb;
  void *arg;

  struct snapshot_list snaps;
  struct segment_list segs;
  struct restore_plan plan;
  struct snapshot_info snap;
  struct widx *idx;
  size_t n_idx;
  size_t next_fetch, next_apply;
  int fetching, applying, snap_done, finishing;
  int pending;
  int tmp_created;
  int tmp_fd;
  uint32_t page_size;
  int64_t index_memory; /* bytes of pages each index keeps in memory */
  struct fetch snapf;
  struct bufpool pool;     /* the fetches' and page stores' large buffers */
  struct final_job *final; /* integrity check and fsync */
  int final_left;
  int64_t t0;

  /* Progress: a line every few seconds, a summary at the end. */
  struct loop_timer *prog;
  uint64_t prog_ms;
  int64_t bytes_total, bytes_fetched;
  size_t objs_total, objs_done, pages_written;
  const char *check; /* the integrity pragma that ran, or NULL */
  int64_t check_ns;

  int status;
  char err[1024];
  int cleaned;
  int canceled; /* restore_cancel: ends at the next step (canceled()) */
};

static void rs_pump(struct restore *rs);
static void store_free(struct widx *w);
struct final_job;

static void rs_fail(struct restore *rs, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rs_fail(struct restore *rs, int code, const char *fmt, ...) {
  if (rs->status)
    return;
  rs->status = code ? code : ERR_CORRUPT;
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  snprintf(rs->err, sizeof(rs->err), "restore: %s", msg);
  free(msg);
}

/* Loop, between steps (no pool job of the restore writing its status):
 * a restore_cancel becomes the restore's failure. */
static void canceled(struct restore *rs) {
  if (rs->canceled && !rs->status)
    rs_fail(rs, ERR_CANCELED, "canceled");
}

/* "12.3MB" */
static void mb_format(int64_t bytes, char *out, size_t n) {
  snprintf(out, n, "%.1fMB", (double)bytes / 1e6);
}

static void on_progress(void *arg) {
  struct restore *rs = arg;
  double secs = (double)(time_mono_ns() - rs->t0) / 1e9;
  char done[32], total[32], rate[32], eta[48] = "-";
  mb_format(rs->bytes_fetched, done, sizeof(done));
  mb_format(rs->bytes_total, total, sizeof(total));
  double bps = secs > 0 ? (double)rs->bytes_fetched / secs : 0;
  mb_format((int64_t)bps, rate, sizeof(rate));
  if (bps > 0 && rs->bytes_total > rs->bytes_fetched)
    duration_format(
        (int64_t)((double)(rs->bytes_total - rs->bytes_fetched) / bps * 1e9),
        eta);
  int pct =
      rs->bytes_total
          ? (int)(100.0 * (double)rs->bytes_fetched / (double)rs->bytes_total)
          : 100;
  log_info(rs->db, rs->b->name,
           "restore progress generation=%s objects=%zu/%zu bytes=%s/%s "
           "(%d%%) rate=%s/s eta=%s pages_written=%zu",
           rs->gen, rs->objs_done, rs->objs_total, done, total, pct, rate, eta,
           rs->pages_written);
  loop_timer_start(rs->prog, rs->prog_ms);
}

static void progress_start(struct restore *rs) {
  rs->objs_total = 1;
  rs->bytes_total = MAX(rs->snap.size, (int64_t)0);
  for (size_t i = 0; i < rs->n_idx; i++)
    for (size_t k = 0; k < rs->idx[i].n; k++) {
      rs->objs_total++;
      rs->bytes_total += MAX(rs->idx[i].segs[k].size, (int64_t)0);
    }
  const char *e = getenv("SLUICE_PROGRESS_INTERVAL_MS"); /* tests */
  rs->prog_ms = e && atoi(e) > 0 ? (uint64_t)atoi(e) : 5000;
  rs->prog = loop_timer_new(on_progress, rs);
  loop_timer_start(rs->prog, rs->prog_ms);
}

static void rs_free(struct restore *rs) {
  if (rs->prog)
    loop_timer_free(rs->prog);
  for (size_t i = 0; i < rs->n_idx; i++) {
    free(rs->idx[i].staging);
    free(rs->idx[i].map);
    free(rs->idx[i].later);
    store_free(&rs->idx[i]);
    fetch_destroy(&rs->idx[i].fetch);
  }
  free(rs->idx);
  fetch_destroy(&rs->snapf);
  bufpool_destroy(&rs->pool);
  snapshot_list_destroy(&rs->snaps);
  restore_plan_destroy(&rs->plan);
  segment_list_destroy(&rs->segs);
  free(rs->db);
  free((char *)rs->o.generation);
  free(rs->out);
  free(rs->tmp);
  free(rs->tmp_wal);
  free(rs->tmp_shm);
  free(rs);
}

static void rs_done(struct restore *rs) {
  restore_cb cb = rs->cb;
  void *arg = rs->arg;
  int status = rs->status;
  char *err = status ? xstrdup(rs->err) : NULL;
  rs_free(rs);
  cb(arg, status, err);
  free(err);
}

/* --- failure cleanup --- */

static void cleanup_work(void *arg) {
  struct restore *rs = arg;
  if (rs->tmp_fd >= 0)
    close(rs->tmp_fd);
  rs->tmp_fd = -1;
  for (size_t i = 0; i < rs->n_idx; i++) {
    struct widx *w = &rs->idx[i];
    if (w->fd >= 0)
      close(w->fd);
    w->fd = -1;
    if (w->created)
      unlink(w->staging);
  }
  if (rs->tmp_created) {
    unlink(rs->tmp);
    unlink(rs->tmp_wal);
    unlink(rs->tmp_shm);
  }
}

static void on_cleaned(void *arg, int status) {
  (void)status;
  rs_done(arg);
}

/* --- per WAL index --- */

static void widx_fail(struct widx *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void widx_fail(struct widx *w, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_keep_first(&w->status, w->err, sizeof(w->err), code, fmt, ap);
  va_end(ap);
}

/* The slot of page pg in w's page store: its own if it was seen in this
 * index before (the last version overwrites it), else the next free one. */
static size_t map_slot(struct widx *w, uint32_t pg) {
  if (w->map_used * 2 >= w->map_cap) {
    size_t cap = w->map_cap ? w->map_cap * 2 : 1024;
    struct page_at *t = xcalloc(cap, sizeof(*t));
    for (size_t i = 0; i < w->map_cap; i++) {
      if (!w->map[i].slot)
        continue;
      size_t h = ((size_t)w->map[i].pgno * 2654435761u) & (cap - 1);
      while (t[h].slot)
        h = (h + 1) & (cap - 1);
      t[h] = w->map[i];
    }
    free(w->map);
    w->map = t;
    w->map_cap = cap;
  }
  size_t h = ((size_t)pg * 2654435761u) & (w->map_cap - 1);
  while (w->map[h].slot && w->map[h].pgno != pg)
    h = (h + 1) & (w->map_cap - 1);
  if (!w->map[h].slot) {
    w->map_used++;
    w->map[h].pgno = pg;
    w->map[h].slot = (uint32_t)++w->slots; /* slot + 1; 0 = empty */
  }
  return w->map[h].slot - 1;
}

/* 1 if applying w writes page pg (w's map still a hash). */
static int map_writes(const struct widx *w, uint32_t pg) {
  if (!w->map_cap || pg > w->scan.db_pages)
    return 0;
  size_t h = ((size_t)pg * 2654435761u) & (w->map_cap - 1);
  while (w->map[h].slot && w->map[h].pgno != pg)
    h = (h + 1) & (w->map_cap - 1);
  return w->map[h].slot != 0;
}

/* 1 if a later index in w->later writes pg: whatever w writes there is
 * overwritten (a truncation in between does not matter, the later write
 * comes after it), so w leaves it out and each page is written once. */
static int written_later(const struct widx *w, uint32_t pg) {
  for (size_t i = 0; i < w->n_later; i++)
    if (map_writes(w->later[i], pg))
      return 1;
  return 0;
}

/* The map as a list sorted by page number, without the pages past the
 * size the last commit gives (SQLite's checkpoint skips them too) and
 * those a later index writes. */
static size_t map_sorted(struct widx *w) {
  size_t k = 0;
  for (size_t i = 0; i < w->map_cap; i++)
    if (w->map[i].slot && w->map[i].pgno <= w->scan.db_pages &&
        !written_later(w, w->map[i].pgno))
      w->map[k++] = (struct page_at){w->map[i].pgno, w->map[i].slot - 1};
  if (k)
    qsort(w->map, k, sizeof(*w->map), by_pgno);
  return k;
}

static void store_free(struct widx *w) {
  for (size_t i = 0; i < w->mem_n; i++)
    bufpool_put(&w->rs->pool, w->mem[i], w->mem_cap[i]);
  free(w->mem_cap);
  w->mem_cap = NULL;
  free(w->mem);
  w->mem = NULL;
  w->mem_n = 0;
  free(w->part);
  w->part = NULL;
}

/* Where slot `slot` is in memory (NULL: in the staging file). */
static uint8_t *slot_mem(struct widx *w, size_t slot) {
  if (slot >= w->mem_max)
    return NULL;
  return w->mem[slot / w->per_mem] +
         (slot % w->per_mem) * (size_t)w->scan.hdr.page_size;
}

/* Pool: keeps the page of a frame in its slot. */
static int store_page(struct widx *w, size_t slot, const uint8_t *page) {
  uint32_t ps = w->scan.hdr.page_size;
  if (slot < w->mem_max) {
    size_t c = slot / w->per_mem;
    if (c >= w->mem_n) { /* slots are given out in order */
      w->mem = xrealloc(w->mem, (c + 1) * sizeof(*w->mem));
      w->mem_cap = xrealloc(w->mem_cap, (c + 1) * sizeof(*w->mem_cap));
      w->mem[c] = bufpool_get(&w->rs->pool,
                              MIN(w->per_mem, w->mem_max - c * w->per_mem) * ps,
                              &w->mem_cap[c]);
      w->mem_n = c + 1;
    }
    memcpy(slot_mem(w, slot), page, ps);
    return 0;
  }
  char tmp[128];
  int rc = pwrite_full(w->fd, page, ps, (off_t)(slot - w->mem_max) * ps);
  if (rc)
    job_fail(&w->fetch, rc, "%s: %s", w->staging,
             errtext(rc, tmp, sizeof(tmp)));
  return rc;
}

/* Pool: checks one frame (salts, checksum chain) and keeps its page. */
static int wal_frame(struct widx *w, const uint8_t *fr) {
  int64_t at = w->scan.end;
  if (!wal_scan_frame(&w->scan, fr)) {
    job_fail(&w->fetch, ERR_WAL_CORRUPT,
             "%s: WAL frame at offset %" PRId64
             " fails its salt or checksum check",
             w->fetch.key, at);
    return ERR_WAL_CORRUPT;
  }
  if (w->rs->o.replay_sqlite)
    return 0;
  return store_page(w, map_slot(w, get_be32(fr)), fr + WAL_FRAME_HEADER_SIZE);
}

/* Pool: the decoded bytes of the index's segments, in order: the WAL
 * header, then whole frames (a frame split between two pieces is put
 * together in w->part).  With replay_sqlite the bytes also go to the
 * staging WAL as they are. */
static int wal_sink(void *arg, const uint8_t *p, size_t n) {
  struct widx *w = arg;
  struct restore *rs = w->rs;
  char tmp[128];
  int rc;
  if (rs->o.replay_sqlite && (rc = pwrite_full(w->fd, p, n, (off_t)w->pos))) {
    job_fail(&w->fetch, rc, "%s: %s", w->staging,
             errtext(rc, tmp, sizeof(tmp)));
    return rc;
  }
  int64_t at = w->pos;
  w->pos += (int64_t)n;
  if (!w->have_hdr) {
    size_t k = MIN(n, (size_t)(WAL_HEADER_SIZE - at));
    memcpy(w->hdr + at, p, k);
    p += k;
    n -= k;
    if (at + (int64_t)k < WAL_HEADER_SIZE)
      return 0;
    struct wal_header h;
    if (wal_header_parse(w->hdr, &h)) {
      job_fail(&w->fetch, ERR_WAL_HEADER, "%s: invalid WAL header",
               w->fetch.key);
      return ERR_WAL_HEADER;
    }
    wal_scan_init(&w->scan, &h);
    w->have_hdr = 1;
    w->fsize = (size_t)wal_frame_size(h.page_size);
    w->part = xmalloc(w->fsize);
    w->per_mem = MAX((size_t)1, (size_t)PAGE_CHUNK / h.page_size);
    w->mem_max = (size_t)(rs->index_memory / h.page_size);
  }
  size_t fs = w->fsize;
  if (w->part_len) {
    size_t k = MIN(n, fs - w->part_len);
    memcpy(w->part + w->part_len, p, k);
    w->part_len += k;
    p += k;
    n -= k;
    if (w->part_len < fs)
      return 0;
    w->part_len = 0;
    if ((rc = wal_frame(w, w->part)))
      return rc;
  }
  for (; n >= fs; p += fs, n -= fs)
    if ((rc = wal_frame(w, p)))
      return rc;
  memcpy(w->part, p, n);
  w->part_len = n;
  return 0;
}

/*
 * Pool, after a segment was decoded (and each frame checked by wal_sink):
 * it must hold the WAL header (first segment) and end on a frame
 * boundary; after the last segment, the WAL must end on a commit.
 */
static int segment_end(struct fetch *f) {
  struct widx *w = f->owner;
  char tmp[128];
  int rc = 0;
  if (!w->have_hdr) {
    job_fail(f, ERR_WAL_HEADER, "%s: invalid WAL header", f->key);
    return ERR_WAL_HEADER;
  }
  if (w->part_len) {
    job_fail(f, ERR_WAL_CORRUPT,
             "%s: ends inside a WAL frame (decompressed length %" PRId64
             ", frame size %zu)",
             f->key, f->out_len, w->fsize);
    return ERR_WAL_CORRUPT;
  }
  if (w->next_seg == w->n - 1) {
    if (w->scan.commit_end != w->scan.end) {
      job_fail(f, ERR_WAL_CORRUPT,
               "%s: WAL index ends inside a transaction (last commit at "
               "offset %" PRId64 ", end %" PRId64 ")",
               f->key, w->scan.commit_end, w->scan.end);
      return ERR_WAL_CORRUPT;
    }
    /* No fsync: the staging file is a scratch copy; the database is
     * fsynced once at the end. */
    if (close(w->fd)) {
      rc = -errno;
      job_fail(f, rc, "%s: %s", w->staging, errtext(rc, tmp, sizeof(tmp)));
    }
    w->fd = -1;
  }
  return rc;
}

static void widx_next_segment(struct widx *w);

static void on_segment_done(struct fetch *f) {
  struct widx *w = f->owner;
  struct restore *rs = w->rs;
  rs->pending--;
  if (f->status) {
    rs_fail(rs, f->status, "%s", f->err);
  } else {
    w->end += f->out_len;
    w->next_seg++;
    rs->objs_done++;
  }
  fetch_destroy(f);
  if (rs->status || w->next_seg == w->n) {
    if (!rs->status)
      w->state = WI_READY;
    rs->fetching--;
    rs_pump(rs);
    return;
  }
  widx_next_segment(w);
}

static void widx_next_segment(struct widx *w) {
  struct restore *rs = w->rs;
  const struct segment_info *s = &w->segs[w->next_seg];
  if (s->offset != w->end) {
    char *key = key_wal_segment(rs->gen, w->index, w->end);
    rs_fail(rs, ERR_SEGMENT_GAP,
            "%s: not contiguous: expected offset %" PRId64 ", got %" PRId64,
            key, w->end, s->offset);
    free(key);
    rs->fetching--;
    rs_pump(rs);
    return;
  }
  char *key = key_wal_segment(rs->gen, w->index, s->offset);
  char *tmp = xasprintf("%s.lz4", w->staging);
  w->fetch.owner = w;
  w->fetch.fetched = &rs->bytes_fetched;
  w->fetch.post = segment_end;
  w->fetch.sink = wal_sink;
  w->fetch.sink_arg = w;
  w->fetch.blocks = 1;
  w->fetch.pool = &rs->pool;
  w->fetch.done = on_segment_done;
  rs->pending++;
  fetch_start(&w->fetch, rs->b, key, s->size, w->fd, w->end, SEG_WHOLE_MAX,
              SEG_CHUNK, SEG_WINDOW, tmp);
  free(tmp);
  free(key);
}

static void staging_open_work(void *arg) {
  struct widx *w = arg;
  char tmp[128];
  w->fd = open(w->staging, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, OUT_MODE);
  if (w->fd < 0)
    widx_fail(w, -errno, "%s: %s", w->staging,
              errtext(-errno, tmp, sizeof(tmp)));
  else
    w->created = 1;
}

static void on_staging_open(void *arg, int status) {
  struct widx *w = arg;
  struct restore *rs = w->rs;
  rs->pending--;
  if (status || w->status || rs->status) {
    rs_fail(rs, w->status ? w->status : status, "%s", w->err);
    rs->fetching--;
    rs_pump(rs);
    return;
  }
  widx_next_segment(w);
}

/* Pool: replays one WAL index into the database with SQLite checkpoints,
 * frame by frame, as Litestream does (restore_opts.replay_sqlite: the
 * reference the page writer is tested against). */
static void apply_sqlite_work(void *arg) {
  struct widx *w = arg;
  struct restore *rs = w->rs;
  int64_t t0 = time_mono_ns();
  char tmp[128];
  const char *first_key = NULL;
  char *key = key_wal_segment(rs->gen, w->index, 0);
  first_key = key;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int64_t nframes = w->have_hdr ? (w->scan.end - WAL_HEADER_SIZE) /
                                      wal_frame_size(w->scan.hdr.page_size)
                                : 0;
  if (w->have_hdr && w->scan.hdr.page_size != rs->page_size) {
    widx_fail(w, ERR_WAL_CORRUPT,
              "%s: WAL page size %u does not match the snapshot's %u",
              first_key, w->scan.hdr.page_size, rs->page_size);
    goto out;
  }
  if (rename(w->staging, rs->tmp_wal)) {
    widx_fail(w, -errno, "%s: %s", rs->tmp_wal,
              errtext(-errno, tmp, sizeof(tmp)));
    goto out;
  }
  w->created = 0;
  int rc = sqlite3_open_v2(rs->tmp, &db, SQLITE_OPEN_READWRITE, NULL);
  /* The file is fsynced once when complete; syncing every checkpoint
   * only slows a restore of many indexes down. */
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, "PRAGMA synchronous=OFF", NULL, NULL, NULL);
  /* PASSIVE first: it reports how many frames SQLite took from the WAL,
   * which must be all of them; TRUNCATE then empties it. */
  const char *modes[] = {"PRAGMA wal_checkpoint(PASSIVE)",
                         "PRAGMA wal_checkpoint(TRUNCATE)"};
  for (int m = 0; m < 2 && rc == SQLITE_OK; m++) {
    rc = sqlite3_prepare_v2(db, modes[m], -1, &st, NULL);
    if (rc == SQLITE_OK)
      rc = sqlite3_step(st) == SQLITE_ROW ? SQLITE_OK : sqlite3_errcode(db);
    if (rc != SQLITE_OK)
      break;
    int busy = sqlite3_column_int(st, 0);
    int64_t log = sqlite3_column_int64(st, 1);
    int64_t done = sqlite3_column_int64(st, 2);
    sqlite3_finalize(st);
    st = NULL;
    if (busy) {
      widx_fail(w, ERR_BUSY,
                "%s: truncation checkpoint failed during restore (busy)",
                first_key);
      goto out;
    }
    if (m == 0 && (log != nframes || done != nframes)) {
      widx_fail(w, ERR_WAL_CORRUPT,
                "%s: SQLite applied %" PRId64 " of %" PRId64
                " WAL frames of index %08" PRIx32,
                first_key, done, nframes, w->index);
      goto out;
    }
  }
  if (rc != SQLITE_OK) {
    widx_fail(w, ERR_SQLITE, "%s: checkpoint of %s failed: %s", first_key,
              rs->tmp, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    goto out;
  }
  if (sqlite3_close(db) != SQLITE_OK) {
    widx_fail(w, ERR_SQLITE, "%s: close failed: %s", rs->tmp,
              sqlite3_errmsg(db));
    db = NULL;
    goto out;
  }
  db = NULL;
  struct stat sb;
  if (w->scan.db_pages && !stat(rs->tmp, &sb) &&
      sb.st_size != (off_t)w->scan.db_pages * rs->page_size) {
    widx_fail(w, ERR_WAL_CORRUPT,
              "%s: database is %lld bytes after the checkpoint, expected "
              "%lld",
              first_key, (long long)sb.st_size,
              (long long)w->scan.db_pages * rs->page_size);
  }
out:
  if (st)
    sqlite3_finalize(st);
  if (db)
    sqlite3_close(db);
  free(key);
  w->elapsed_ns = time_mono_ns() - t0;
}

#define RUN_PAGES 256 /* pages written by one pwritev */

/* pwritev of the whole run, or the same bytes again one piece at a time
 * after a short or interrupted write. */
static int pwritev_full(int fd, const struct iovec *iov, int cnt, off_t off) {
  size_t total = 0;
  for (int i = 0; i < cnt; i++)
    total += iov[i].iov_len;
  ssize_t r = pwritev(fd, iov, cnt, off);
  if (r == (ssize_t)total)
    return 0;
  if (r < 0 && errno != EINTR)
    return -errno;
  for (int i = 0; i < cnt; i++) {
    int rc = pwrite_full(fd, iov[i].iov_base, iov[i].iov_len, off);
    if (rc)
      return rc;
    off += (off_t)iov[i].iov_len;
  }
  return 0;
}

/* Writes the pages listed in v (sorted) from the index's page store into
 * the database, runs of consecutive pages in one pwritev each. */
static int write_pages(struct restore *rs, struct widx *w, int fd,
                       const struct page_at *v, size_t n) {
  uint32_t ps = w->scan.hdr.page_size;
  struct iovec iov[RUN_PAGES];
  uint8_t *bounce = NULL; /* pages read back from the staging file */
  int rc = 0;
  for (size_t i = 0; i < n && !rc;) {
    size_t run = 0;
    while (i + run < n && run < RUN_PAGES &&
           v[i + run].pgno == v[i].pgno + run) {
      uint8_t *m = slot_mem(w, v[i + run].slot);
      if (!m) {
        if (!bounce)
          bounce = xmalloc((size_t)ps * RUN_PAGES);
        m = bounce + run * ps;
        ssize_t r =
            pread_full(fd, m, ps, (off_t)(v[i + run].slot - w->mem_max) * ps);
        if (r != (ssize_t)ps) {
          rc = r < 0 ? (int)r : -EIO;
          break;
        }
      }
      iov[run].iov_base = m;
      iov[run].iov_len = ps;
      run++;
    }
    if (!rc)
      rc = pwritev_full(rs->tmp_fd, iov, (int)run,
                        (off_t)(v[i].pgno - 1) * (off_t)ps);
    i += run;
  }
  free(bounce);
  return rc;
}

/* Pool: applies one WAL index by writing the last version of each page
 * once at its offset, then giving the file the size of the index's last
 * commit (shorter after a VACUUM), which is what SQLite's checkpoint of
 * the same WAL does, without replaying every frame. */
static void apply_pages_work(void *arg) {
  struct widx *w = arg;
  struct restore *rs = w->rs;
  int64_t t0 = time_mono_ns();
  char tmp[128];
  char *key = key_wal_segment(rs->gen, w->index, 0);
  int fd = -1, rc = 0;
  size_t n = 0;
  if (w->scan.hdr.page_size != rs->page_size) {
    widx_fail(w, ERR_WAL_CORRUPT,
              "%s: WAL page size %u does not match the snapshot's %u", key,
              w->scan.hdr.page_size, rs->page_size);
    goto out;
  }
  if (w->slots > w->mem_max)
    fd = open(w->staging, O_RDONLY | O_CLOEXEC);
  if (w->slots > w->mem_max && fd < 0) {
    rc = -errno;
    widx_fail(w, rc, "%s: %s", w->staging, errtext(rc, tmp, sizeof(tmp)));
    goto out;
  }
  n = map_sorted(w);
  if ((rc = write_pages(rs, w, fd, w->map, n))) {
    widx_fail(w, rc, "%s: cannot apply to %s: %s", key, rs->tmp,
              errtext(rc, tmp, sizeof(tmp)));
    goto out;
  }
  /* An index without a commit (a WAL restart's bare header) changes
   * nothing, as SQLite's checkpoint of it. */
  off_t size = (off_t)w->scan.db_pages * rs->page_size;
  struct stat sb;
  if (w->scan.db_pages &&
      (fstat(rs->tmp_fd, &sb) ||
       (sb.st_size != size && ftruncate(rs->tmp_fd, size)))) {
    rc = -errno;
    widx_fail(w, rc, "%s: cannot set the size of %s: %s", key, rs->tmp,
              errtext(rc, tmp, sizeof(tmp)));
    goto out;
  }
  w->pages = n;
out:
  free(w->map);
  w->map = NULL;
  w->map_cap = w->map_used = 0;
  store_free(w);
  if (fd >= 0)
    close(fd);
  if (w->created && !unlink(w->staging))
    w->created = 0;
  free(key);
  w->elapsed_ns = time_mono_ns() - t0;
}

static void on_applied(void *arg, int status) {
  struct widx *w = arg;
  struct restore *rs = w->rs;
  rs->pending--;
  rs->applying = 0;
  if (status || w->status) {
    rs_fail(rs, w->status ? w->status : status, "%s", w->err);
  } else {
    char el[40];
    duration_format(w->elapsed_ns, el);
    log_info(rs->db, rs->b->name,
             "applied wal generation=%s index=%08" PRIx32
             " pages=%zu elapsed=%s",
             rs->gen, w->index, w->pages, el);
    w->state = WI_APPLIED;
    rs->next_apply++;
    rs->pages_written += w->pages;
  }
  rs_pump(rs);
}

/* --- finishing --- */

/* Results of the two final jobs, which run at the same time. */
struct final_job {
  struct restore *rs;
  int status;
  char err[1024];
  const char *check; /* the integrity pragma run, or NULL */
  int64_t elapsed_ns;
};

static void final_fail(struct final_job *j, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void final_fail(struct final_job *j, int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fail_keep_first(&j->status, j->err, sizeof(j->err), code, fmt, ap);
  va_end(ap);
}

/* The pragma restore_opts.integrity asks for on a file of `size` bytes. */
static const char *integrity_pragma(int mode, int64_t size) {
  switch (mode) {
  case RESTORE_INTEGRITY_OFF:
    return NULL;
  case RESTORE_INTEGRITY_QUICK:
    return "quick_check";
  case RESTORE_INTEGRITY_FULL:
    return "integrity_check";
  default:
    return size > RESTORE_QUICK_ABOVE ? "quick_check" : "integrity_check";
  }
}

static void integrity_work(void *arg) {
  struct final_job *j = arg;
  struct restore *rs = j->rs;
  int64_t t0 = time_mono_ns();
  struct stat fsb;
  j->check = integrity_pragma(
      rs->o.integrity, fstat(rs->tmp_fd, &fsb) ? 0 : (int64_t)fsb.st_size);
  if (!j->check)
    return;
  sqlite3 *db = NULL;
  sqlite3_stmt *st = NULL;
  int rc = sqlite3_open_v2(rs->tmp, &db, SQLITE_OPEN_READWRITE, NULL);
  /* Reading through a mapping more than halves the time of the check; the
   * pages are the file's own page cache, not process memory. */
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, "PRAGMA mmap_size=1073741824", NULL, NULL, NULL);
  char sql[40];
  snprintf(sql, sizeof(sql), "PRAGMA %s", j->check);
  if (rc == SQLITE_OK)
    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
      const char *res = (const char *)sqlite3_column_text(st, 0);
      if (!res || strcmp(res, "ok"))
        final_fail(j, ERR_INTEGRITY, "integrity check failed for %s: %s",
                   rs->tmp, res ? res : "no result");
      rc = SQLITE_OK;
    }
  }
  if (rc != SQLITE_OK)
    final_fail(j, ERR_SQLITE, "integrity check of %s: %s", rs->tmp,
               db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_finalize(st);
  if (db && sqlite3_close(db) != SQLITE_OK)
    final_fail(j, ERR_SQLITE, "close of %s: %s", rs->tmp, sqlite3_errmsg(db));
  if (j->status)
    return;
  /* SQLite removes both when the last connection closes cleanly. */
  struct stat sb;
  if (!stat(rs->tmp_wal, &sb) && sb.st_size > 0) {
    final_fail(j, ERR_SQLITE, "%s was not checkpointed", rs->tmp_wal);
    return;
  }
  unlink(rs->tmp_wal);
  unlink(rs->tmp_shm);
  j->elapsed_ns = time_mono_ns() - t0;
}

/* Runs beside the integrity check: the file is complete, only read from
 * now on. */
static void sync_work(void *arg) {
  struct final_job *j = arg;
  struct restore *rs = j->rs;
  char tmp[128];
  if (fchmod(rs->tmp_fd, OUT_MODE) || fsync(rs->tmp_fd)) {
    int e = -errno;
    final_fail(j, e, "%s: %s", rs->tmp, errtext(e, tmp, sizeof(tmp)));
  }
}

static void rename_work(void *arg) {
  struct restore *rs = arg;
  char tmp[128];
  /* Every SQLite connection is closed: the descriptor can go. */
  close(rs->tmp_fd);
  rs->tmp_fd = -1;
  /* Never replace a file that appeared at the output meanwhile. */
  int rc = renameat2(AT_FDCWD, rs->tmp, AT_FDCWD, rs->out, RENAME_NOREPLACE);
  if (rc && (errno == EINVAL || errno == ENOSYS)) {
    struct stat sb;
    if (!lstat(rs->out, &sb))
      errno = EEXIST;
    else
      rc = rename(rs->tmp, rs->out);
  }
  if (rc && errno == EEXIST) {
    rs_fail(rs, ERR_EXISTS, "cannot restore, output path already exists: %s",
            rs->out);
    return;
  }
  if (rc) {
    int e = -errno;
    rs_fail(rs, e, "rename %s: %s", rs->tmp, errtext(e, tmp, sizeof(tmp)));
    return;
  }
  rs->tmp_created = 0;
  char *dir = path_dir(rs->out);
  fsync_dir(dir);
  free(dir);
}

static void on_renamed(void *arg, int status) {
  struct restore *rs = arg;
  rs->pending--;
  if (status)
    rs_fail(rs, status, "rename job failed");
  if (!rs->status) {
    /* In place: a cancel that came during the rename is too late (it
     * would report a failure and leave the database behind). */
    rs->canceled = 0;
    int64_t ns = time_mono_ns() - rs->t0;
    char el[40], ck[40] = "0s", bytes[32], rate[32];
    duration_format(ns, el);
    duration_format(rs->check_ns, ck);
    mb_format(rs->bytes_fetched, bytes, sizeof(bytes));
    mb_format(ns > 0 ? (int64_t)((double)rs->bytes_fetched * 1e9 / (double)ns)
                     : 0,
              rate, sizeof(rate));
    log_info(rs->db, rs->b->name,
             "restore complete path=%s elapsed=%s objects=%zu bytes=%s "
             "rate=%s/s pages_written=%zu check=%s check_elapsed=%s",
             rs->out, el, rs->objs_done, bytes, rate, rs->pages_written,
             rs->check ? rs->check : "off", ck);
  }
  rs_pump(rs);
}

static void on_final_job(void *arg, int status) {
  struct final_job *j = arg;
  struct restore *rs = j->rs;
  rs->pending--;
  if (status)
    rs_fail(rs, status, "final job failed");
  else if (j->status)
    rs_fail(rs, j->status, "%s", j->err);
  else if (j->check) {
    char el[40];
    rs->check = j->check;
    rs->check_ns = j->elapsed_ns;
    duration_format(j->elapsed_ns, el);
    log_info(rs->db, rs->b->name, "%s ok path=%s elapsed=%s", j->check, rs->tmp,
             el);
  }
  if (--rs->final_left > 0)
    return;
  free(rs->final);
  rs->final = NULL;
  canceled(rs); /* (not renamed into place after a cancel) */
  if (rs->status) {
    rs_pump(rs);
    return;
  }
  log_info(rs->db, rs->b->name,
           "renaming database from temporary location path=%s", rs->out);
  rs->pending++;
  loop_work_submit(rename_work, on_renamed, rs);
}

/* --- the scheduler --- */

static void widx_start(struct widx *w) {
  struct restore *rs = w->rs;
  w->state = WI_FETCHING;
  rs->fetching++;
  rs->pending++;
  loop_work_submit(staging_open_work, on_staging_open, w);
}

static void rs_pump(struct restore *rs) {
  canceled(rs);
  if (rs->status) {
    if (!rs->pending && !rs->cleaned) {
      rs->cleaned = 1;
      loop_work_submit(cleanup_work, on_cleaned, rs);
    }
    return;
  }
  if (rs->finishing) {
    if (!rs->pending)
      rs_done(rs);
    return;
  }
  size_t par = (size_t)(rs->o.parallelism < 1 ? 1 : rs->o.parallelism);
  /* Bound the staged-but-not-applied indexes too (disk space). */
  while ((size_t)rs->fetching < par && rs->next_fetch < rs->n_idx &&
         rs->next_fetch < rs->next_apply + 2 * par)
    widx_start(&rs->idx[rs->next_fetch++]);
  if (!rs->snap_done || rs->applying)
    return;
  if (rs->next_apply < rs->n_idx) {
    struct widx *w = &rs->idx[rs->next_apply];
    if (w->state == WI_READY) {
      rs->applying = 1;
      rs->pending++;
      if (!rs->o.replay_sqlite) {
        free(w->later);
        w->later = NULL;
        w->n_later = 0;
        for (size_t j = rs->next_apply + 1; j < rs->n_idx; j++)
          if (rs->idx[j].state == WI_READY) {
            w->later = xrealloc(w->later, (w->n_later + 1) * sizeof(*w->later));
            w->later[w->n_later++] = &rs->idx[j];
          }
      }
      loop_work_submit(rs->o.replay_sqlite ? apply_sqlite_work
                                           : apply_pages_work,
                       on_applied, w);
    }
    return;
  }
  rs->finishing = 1;
  rs->final = xcalloc(2, sizeof(*rs->final));
  rs->final_left = 2;
  rs->pending += 2;
  rs->final[0].rs = rs->final[1].rs = rs;
  loop_work_submit(integrity_work, on_final_job, &rs->final[0]);
  loop_work_submit(sync_work, on_final_job, &rs->final[1]);
}

/* --- snapshot --- */

/* Pool: the decoded snapshot must look like a database; remember its page
 * size for the WAL checks. */
static int verify_snapshot(struct fetch *f) {
  struct restore *rs = f->owner;
  uint8_t h[100];
  ssize_t r = f->out_len >= 100 ? pread_full(rs->tmp_fd, h, sizeof(h), 0) : 0;
  uint32_t ps = r == 100 ? (uint32_t)h[16] << 8 | h[17] : 0;
  if (ps == 1)
    ps = 65536;
  if (r != 100 || memcmp(h, "SQLite format 3", 16) || ps < 512 || ps > 65536 ||
      (ps & (ps - 1)) || f->out_len % ps) {
    job_fail(f, ERR_CORRUPT, "%s: not a SQLite database", f->key);
    return ERR_CORRUPT;
  }
  rs->page_size = ps;
  /* tmp_fd stays open until every SQLite connection is closed: closing any
   * descriptor of a file drops every POSIX lock the process holds on it,
   * SQLite's included.  It is fsynced at the end. */
  return 0;
}

static void on_snapshot_done(struct fetch *f) {
  struct restore *rs = f->owner;
  rs->pending--;
  if (f->status) {
    rs_fail(rs, f->status, "%s", f->err);
  } else {
    rs->snap_done = 1;
    rs->objs_done++;
    rs->pages_written +=
        rs->page_size ? (size_t)(f->out_len / rs->page_size) : 0;
    char el[40];
    duration_format(time_mono_ns() - rs->t0, el);
    log_info(rs->db, rs->b->name,
             "snapshot decoded generation=%s index=%08" PRIx32 " size=%" PRId64
             " elapsed=%s",
             rs->gen, rs->snap.index, f->out_len, el);
  }
  rs_pump(rs);
}

static void prepare_work(void *arg) {
  struct restore *rs = arg;
  char tmp[128];
  struct stat sb;
  if (!lstat(rs->out, &sb)) {
    rs_fail(rs, ERR_EXISTS, "cannot restore, output path already exists: %s",
            rs->out);
    return;
  }
  char *dir = path_dir(rs->out);
  int rc = mkdir_p(dir, DIR_MODE);
  if (rc) {
    rs_fail(rs, rc, "cannot create %s: %s", dir, errtext(rc, tmp, sizeof(tmp)));
    free(dir);
    return;
  }
  free(dir);
  /* A stale -wal beside the new file would be replayed by SQLite. */
  unlink(rs->tmp_wal);
  unlink(rs->tmp_shm);
  rs->tmp_fd = open(rs->tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, OUT_MODE);
  if (rs->tmp_fd < 0) {
    rc = -errno;
    rs_fail(rs, rc, "%s: %s", rs->tmp, errtext(rc, tmp, sizeof(tmp)));
    return;
  }
  rs->tmp_created = 1;
}

static void on_prepared(void *arg, int status) {
  struct restore *rs = arg;
  rs->pending--;
  if (status)
    rs_fail(rs, status, "prepare job failed");
  canceled(rs);
  if (rs->status) {
    rs_pump(rs);
    return;
  }
  progress_start(rs);
  char *key = key_snapshot(rs->gen, rs->snap.index);
  char *tmp = xasprintf("%s.snapshot.lz4", rs->tmp);
  log_info(rs->db, rs->b->name,
           "restoring snapshot generation=%s index=%08" PRIx32 " path=%s",
           rs->gen, rs->snap.index, rs->tmp);
  rs->snapf.owner = rs;
  rs->snapf.writeback = 1;
  rs->snapf.blocks = 1;
  rs->snapf.pool = &rs->pool;
  rs->snapf.fetched = &rs->bytes_fetched;
  rs->snapf.post = verify_snapshot;
  rs->snapf.done = on_snapshot_done;
  rs->pending++;
  fetch_start(&rs->snapf, rs->b, key, rs->snap.size, rs->tmp_fd, 0,
              SNAP_WHOLE_MAX, SNAP_CHUNK, SNAP_WINDOW, tmp);
  free(tmp);
  free(key);
  rs_pump(rs);
}

/* Turns the plan into one widx per WAL index. */
static void plan_apply(struct restore *rs) {
  rs->snap = rs->plan.snap;
  rs->n_idx = rs->plan.n_idx;
  rs->idx = rs->n_idx ? xcalloc(rs->n_idx, sizeof(*rs->idx)) : NULL;
  for (size_t k = 0; k < rs->n_idx; k++) {
    struct widx *w = &rs->idx[k];
    w->rs = rs;
    w->index = rs->plan.idx[k].index;
    w->segs = rs->plan.idx[k].segs;
    w->n = rs->plan.idx[k].n;
    w->fd = -1;
    w->staging = xasprintf("%s-%08" PRIx32 "-wal", rs->tmp, w->index);
  }
  /* Up to 2 * parallelism indexes are staged at once (rs_pump); past its
   * share an index keeps the rest of its pages in its staging file. */
  int par = MAX(1, rs->o.parallelism);
  const char *e = getenv("SLUICE_RESTORE_MEMORY"); /* bytes; tests */
  int64_t mem = rs->o.memory > 0 ? rs->o.memory : RESTORE_MEMORY_DEFAULT;
  if (e && *e)
    mem = atoll(e);
  rs->index_memory = mem / (2 * par);
}

static void on_segments(void *arg, int status, const char *err) {
  struct restore *rs = arg;
  rs->pending--;
  char msg[1024];
  canceled(rs);
  if (rs->status) {
    rs_pump(rs);
    return;
  }
  if (status) {
    rs_fail(rs, status, "%s", err ? err : err_str(status));
  } else if ((status = restore_plan_make(&rs->snaps, &rs->segs, &rs->o, rs->gen,
                                         &rs->plan, msg, sizeof(msg)))) {
    rs_fail(rs, status, "%s", msg);
  } else {
    plan_apply(rs);
  }
  if (rs->status) {
    rs_pump(rs);
    return;
  }
  rs->pending++;
  loop_work_submit(prepare_work, on_prepared, rs);
}

static void on_snapshots(void *arg, int status, const char *err) {
  struct restore *rs = arg;
  rs->pending--;
  if (status)
    rs_fail(rs, status, "%s", err ? err : err_str(status));
  canceled(rs);
  if (rs->status) {
    rs_pump(rs);
    return;
  }
  rs->pending++;
  store_segments(rs->b, rs->gen, &rs->segs, on_segments, rs);
}

struct restore *restore_run(struct backend *b, const char *gen,
                            const struct restore_opts *o, const char *out_path,
                            restore_cb cb, void *arg) {
  struct restore *rs = xcalloc(1, sizeof(*rs));
  rs->b = b;
  snprintf(rs->gen, sizeof(rs->gen), "%s", gen);
  rs->o = *o;
  rs->db = o->db ? xstrdup(o->db) : NULL;
  rs->o.db = rs->db;
  rs->o.generation = o->generation ? xstrdup(o->generation) : NULL;
  rs->out = path_abs(out_path);
  rs->tmp = xasprintf("%s.tmp", rs->out);
  rs->tmp_wal = xasprintf("%s-wal", rs->tmp);
  rs->tmp_shm = xasprintf("%s-shm", rs->tmp);
  rs->tmp_fd = -1;
  bufpool_init(&rs->pool,
               (size_t)(o->memory > 0 ? o->memory : RESTORE_MEMORY_DEFAULT) /
                   2);
  rs->cb = cb;
  rs->arg = arg;
  rs->t0 = time_mono_ns();
  rs->pending++;
  /* Snapshots first, then segments: a snapshot goes to the store after
   * the segments up to its position (core/replica.c), so a snapshot
   * listed while replication runs has them in the later listing. */
  store_snapshots(b, rs->gen, &rs->snaps, on_snapshots, rs);
  return rs;
}

/* Something is always in flight until cb (rs->pending > 0): its return
 * sees the status and winds down (rs_pump), the fetches stop at their
 * next step, and the cleanup removes what was written. */
void restore_cancel(struct restore *rs) {
  if (!rs || rs->canceled)
    return;
  /* (Between run and cb something is in flight: a step, or the cleanup
   * after a failure.) */
  assert(rs->pending > 0 || rs->cleaned);
  /* (rs->status itself is folded in on the loop by the next step: a pool
   * job may be writing it now.) */
  rs->canceled = 1;
  fetch_cancel(&rs->snapf);
  for (size_t i = 0; i < rs->n_idx; i++)
    fetch_cancel(&rs->idx[i].fetch);
}

/* ------------------------------------------------------------------ */

int restore_run_sync(struct backend *b, const char *gen,
                     const struct restore_opts *o, const char *out_path,
                     char *err, size_t errlen) {
  struct sync_wait w;
  sync_wait_init(&w, err, errlen);
  restore_run(b, gen, o, out_path, sync_wait_cb, &w);
  return sync_wait_run(&w);
}
