#include "core/resync.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "core/engine.h"
#include "core/shadow.h"
#include "format/wal.h"

#define READ_CHUNK (1 << 20)
/* A copy round noting more frames than this gives the map up (rebuilt at
 * the next sync): bounds the round's memory at 64 MiB. */
#define MAX_ROUND_FRAMES (4u << 20)
/* How long a resync waits for the checkpoint lock (an application
 * checkpoint in progress) before the open is retried. */
#define CKPT_LOCK_WAIT_MS 2000

void resync_init(struct resync *r) {
  memset(r, 0, sizeof(*r));
  pagemap_init(&r->map, 0);
  r->save_period_ns = RESYNC_SAVE_PERIOD_NS;
}

void resync_destroy(struct resync *r) {
  pagemap_destroy(&r->map);
  free(r->round);
  memset(r, 0, sizeof(*r));
}

static void note(struct resync *r, const uint8_t *frame, uint32_t page_size) {
  if (r->round_n == r->round_cap) {
    r->round_cap = r->round_cap ? r->round_cap * 2 : 256;
    r->round = xrealloc(r->round, r->round_cap * sizeof(*r->round));
  }
  struct resync_frame *f = &r->round[r->round_n++];
  f->pgno = get_be32(frame);
  f->commit = get_be32(frame + 4);
  f->h = pagemap_hash(frame + WAL_FRAME_HEADER_SIZE, page_size);
}

/* Applies noted frames in order; a commit frame sets the size. */
static int apply(struct pagemap *m, const struct resync_frame *f, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc = pagemap_set(m, f[i].pgno, f[i].h);
    if (!rc && f[i].commit)
      rc = pagemap_commit(m, f[i].commit);
    if (rc)
      return rc;
  }
  return 0;
}

void resync_note_frame(struct engine *e, const uint8_t *frame) {
  struct resync *r = &e->rs;
  if (!r->valid)
    return;
  if (r->round_n >= MAX_ROUND_FRAMES) {
    r->valid = 0;
    r->round_n = 0;
    return;
  }
  note(r, frame, e->hdr.page_size);
}

void resync_round_end(struct engine *e, int64_t frames) {
  struct resync *r = &e->rs;
  if (r->valid && frames > 0) {
    if ((size_t)frames > r->round_n ||
        apply(&r->map, r->round, (size_t)frames)) {
      r->valid = 0;
    } else {
      r->unsaved += frames * wal_frame_size(e->hdr.page_size);
    }
  }
  r->round_n = 0;
}

void resync_forget(struct engine *e) {
  struct resync *r = &e->rs;
  r->valid = 0;
  r->saved = 0;
  r->synced = 0;
  r->rebuild_failed = 0;
  r->round_n = 0;
  r->unsaved = 0;
}

void resync_drop_saved(struct engine *e) {
  char *path = path_join(e->meta, RESYNC_MAP_FILE);
  unlink(path);
  free(path);
  e->rs.saved = 0;
  e->rs.synced = 0;
}

uint32_t resync_prune_floor(const struct engine *e) {
  return e->rs.saved ? e->rs.saved_index : UINT32_MAX;
}

/* --- replaying shadow WAL files into a map --- */

/* Applies the committed frames of one shadow file that end after `from`
 * and up to `to` (-1: its last commit).  `from` must be 32 or the end of
 * a commit frame in the file, `to` the end of one. */
static int replay_file(struct resync *r, struct pagemap *m, const char *path,
                       int64_t from, int64_t to, int64_t *bytes, char *why,
                       size_t wlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int rc = -errno;
    snprintf(why, wlen, "cannot open %s: %s", path, strerror(errno));
    return rc;
  }
  uint8_t hb[WAL_HEADER_SIZE];
  struct wal_header h;
  int rc = 0;
  if (pread_full(fd, hb, sizeof(hb), 0) != WAL_HEADER_SIZE ||
      wal_header_parse(hb, &h)) {
    snprintf(why, wlen, "%s: invalid WAL header", path);
    close(fd);
    return ERR_WAL_HEADER;
  }
  if (h.page_size != m->page_size) {
    snprintf(why, wlen, "%s: page size %u, the map's is %u", path, h.page_size,
             m->page_size);
    close(fd);
    return ERR_CORRUPT;
  }
  int64_t fs = wal_frame_size(h.page_size);
  size_t nframes = (size_t)MAX(1, READ_CHUNK / fs);
  uint8_t *buf = xmalloc((size_t)fs * nframes);
  struct wal_scan s;
  wal_scan_init(&s, &h);
  int hit_from = from == WAL_HEADER_SIZE, done = 0;
  r->round_n = 0;
  while (!done) {
    ssize_t got = pread_full(fd, buf, (size_t)fs * nframes, (off_t)s.end);
    if (got < 0) {
      rc = (int)got;
      snprintf(why, wlen, "read %s: %s", path, strerror(-rc));
      break;
    }
    size_t n = (size_t)got / (size_t)fs, i;
    for (i = 0; i < n; i++) {
      if ((to >= 0 && s.end >= to) || !wal_scan_frame(&s, buf + i * fs)) {
        done = 1;
        break;
      }
      if (s.end > from)
        note(r, buf + i * fs, h.page_size);
      if (s.commit_end == s.end) {
        if (s.end == from)
          hit_from = 1;
        if (r->round_n && apply(m, r->round, r->round_n)) {
          snprintf(why, wlen, "%s: page number beyond the maximum", path);
          rc = ERR_TOO_BIG;
          done = 1;
          break;
        }
        if (s.end > from)
          *bytes += (int64_t)r->round_n * fs;
        r->round_n = 0;
      }
    }
    if (n < nframes)
      done = 1;
  }
  r->round_n = 0;
  free(buf);
  close(fd);
  if (rc)
    return rc;
  if (!hit_from) {
    snprintf(why, wlen, "%s: offset %lld is not a commit boundary", path,
             (long long)from);
    return ERR_CORRUPT;
  }
  if (to >= 0 && s.commit_end != to) {
    snprintf(why, wlen, "%s ends at %lld, expected %lld", path,
             (long long)s.commit_end, (long long)to);
    return ERR_CORRUPT;
  }
  return 0;
}

/* Brings m from its position forward to (index, offset) of its generation
 * by replaying the shadow WAL files in between. */
static int bring_forward(struct engine *e, struct pagemap *m, uint32_t index,
                         int64_t offset, int64_t *bytes, char *why,
                         size_t wlen) {
  if (m->index > index || (m->index == index && m->offset > offset)) {
    snprintf(why, wlen, "is at %08x:%lld, ahead of the shadow wal (%08x:%lld)",
             m->index, (long long)m->offset, index, (long long)offset);
    return ERR_CORRUPT;
  }
  for (uint32_t i = m->index; i <= index; i++) {
    char *path = shadow_wal_path(e->meta, m->gen, i);
    int rc = replay_file(&e->rs, m, path, i == m->index ? m->offset : 32,
                         i == index ? offset : -1, bytes, why, wlen);
    free(path);
    if (rc)
      return rc;
  }
  m->index = index;
  m->offset = offset;
  return 0;
}

static uint64_t db_ino(const struct engine *e) {
  struct stat sb;
  return fstat(e->db_fd, &sb) ? 0 : (uint64_t)sb.st_ino;
}

/* Reads and checks the saved map of generation gen. */
static int load_map(struct engine *e, const char *gen, struct pagemap *m,
                    char *why, size_t wlen) {
  char *path = path_join(e->meta, RESYNC_MAP_FILE);
  struct buf b;
  int rc = file_read_all(
      path, PAGEMAP_HEADER_SIZE + (size_t)PAGEMAP_MAX_PAGES * 8, &b);
  if (rc) {
    if (rc == -ENOENT || rc == ERR_NOT_FOUND)
      snprintf(why, wlen, "missing (%s)", path);
    else
      snprintf(why, wlen, "%s: %s", path, err_str(rc));
    free(path);
    return rc;
  }
  char err[160];
  rc = pagemap_decode(b.data, b.len, m, err, sizeof(err));
  buf_destroy(&b);
  if (rc) {
    snprintf(why, wlen, "%s: %s", path, err);
  } else if (strcmp(m->gen, gen)) {
    snprintf(why, wlen, "%s is of generation %s, not %s", path, m->gen, gen);
    rc = ERR_CORRUPT;
  } else if (m->page_size != e->page_size) {
    snprintf(why, wlen, "page size changed from %u to %u", m->page_size,
             e->page_size);
    rc = ERR_CORRUPT;
  } else if (m->ino != db_ino(e)) {
    snprintf(why, wlen, "database file replaced (inode %llu, map of %llu)",
             (unsigned long long)db_ino(e), (unsigned long long)m->ino);
    rc = ERR_CORRUPT;
  }
  free(path);
  return rc;
}

/* --- saving --- */

static int64_t save_threshold(const struct resync *r) {
  return MAX((int64_t)r->map.n * 16, (int64_t)1 << 20);
}

void resync_save(struct engine *e) {
  struct resync *r = &e->rs;
  if (!r->valid || !e->gen[0])
    return;
  /* Never a map ahead of the durable shadow. */
  if (e->shadow_dirty && e->shadow_fd >= 0) {
    if (fdatasync(e->shadow_fd))
      return;
    e->shadow_dirty = 0;
    e->shadow_unstarted = 0;
  }
  memcpy(r->map.gen, e->gen, sizeof(r->map.gen));
  r->map.index = e->index;
  r->map.offset = e->shadow_size;
  r->map.ino = db_ino(e);
  size_t len;
  uint8_t *data = pagemap_encode(&r->map, &len);
  char *path = path_join(e->meta, RESYNC_MAP_FILE);
  /* The map file is fsynced before its rename (a crash of the machine
   * never finds a torn map under the name), but the rename itself is
   * durable only once the meta directory is fsynced.  That fsync is needed
   * when the index moves: shadow files below saved_index are then pruned,
   * and a machine crash that lost the rename would find the previous map,
   * whose shadow files are gone (a new generation instead of a resync).
   * Within one index it is not: whichever map a crash leaves, the previous
   * or this one, names a position in the same, kept shadow file that was
   * durable when it was saved, so it is correct and only replays a little
   * more.  Hence the directory is fsynced unless the last map with a
   * durable name is of this generation and index.  (A kill -9 of sluice
   * alone needs none of these flushes: the page cache survives it.) */
  int sync_dir = !(r->saved && r->synced && r->saved_index == e->index);
  int rc = file_write_atomic_dir(path, data, len, 0600, sync_dir);
  if (rc) {
    log_warn(e->name, NULL, "cannot write page map %s: %s", path,
             strerror(-rc));
  } else {
    r->saved = 1;
    r->synced = 1;
    r->saved_index = e->index;
    r->unsaved = 0;
    r->saved_ns = time_mono_ns();
  }
  free(path);
  free(data);
}

/* --- start-up and maintenance --- */

void resync_load(struct engine *e) {
  struct resync *r = &e->rs;
  struct pagemap m;
  pagemap_init(&m, 0);
  char why[320];
  int64_t bytes = 0;
  int rc = load_map(e, e->gen, &m, why, sizeof(why));
  uint32_t saved_index = m.index;
  if (!rc)
    rc = bring_forward(e, &m, e->index, e->shadow_size, &bytes, why,
                       sizeof(why));
  if (rc) {
    log_info(e->name, NULL, "page map %s: rebuilding it", why);
    pagemap_destroy(&m);
    resync_forget(e);
    return;
  }
  pagemap_destroy(&r->map);
  r->map = m;
  r->valid = 1;
  r->saved = 1;
  r->synced = 1; /* (read from the directory: see resync_save) */
  r->saved_index = saved_index;
  r->unsaved = bytes;
}

/* Hashes every page of the database file into m.  Reads through the fd
 * SQLite's locks live on (never open and close another one). */
static int hash_db(struct engine *e, struct pagemap *m, char *why,
                   size_t wlen) {
  struct stat sb;
  pagemap_init(m, e->page_size);
  if (fstat(e->db_fd, &sb)) {
    snprintf(why, wlen, "stat %s: %s", e->db_path, strerror(errno));
    return -errno;
  }
  uint32_t ps = e->page_size;
  if (sb.st_size % ps || sb.st_size / ps > PAGEMAP_MAX_PAGES) {
    snprintf(why, wlen, "database file size %lld is not a page count",
             (long long)sb.st_size);
    return ERR_CORRUPT;
  }
  uint32_t npages = (uint32_t)(sb.st_size / ps);
  int rc = pagemap_commit(m, npages);
  size_t per = (size_t)MAX(1, READ_CHUNK / (int64_t)ps);
  uint8_t *buf = xmalloc(per * ps);
  for (uint32_t p = 0; !rc && p < npages;) {
    size_t n = MIN(per, (size_t)(npages - p));
    ssize_t got = pread_full(e->db_fd, buf, n * ps, (off_t)p * ps);
    if (got != (ssize_t)(n * ps)) {
      snprintf(why, wlen, "read %s: %s", e->db_path,
               got < 0 ? strerror((int)-got) : "short read");
      rc = got < 0 ? (int)got : -EIO;
      break;
    }
    for (size_t i = 0; i < n; i++)
      m->h[p + i] = pagemap_hash(buf + i * ps, ps);
    p += (uint32_t)n;
  }
  free(buf);
  return rc;
}

/* The state at the shadow's end = the database file (every earlier WAL
 * lifetime is in it, and at most a prefix of the current one: a
 * checkpoint never passes our pin, which is behind what we copied) with
 * the current shadow file applied from its first frame. */
static void rebuild(struct engine *e) {
  struct resync *r = &e->rs;
  struct pagemap m;
  char why[320];
  int64_t t0 = time_mono_ns(), bytes = 0;
  int rc = hash_db(e, &m, why, sizeof(why));
  if (!rc) {
    char *path = shadow_wal_path(e->meta, e->gen, e->index);
    rc = replay_file(r, &m, path, WAL_HEADER_SIZE, e->shadow_size, &bytes, why,
                     sizeof(why));
    free(path);
  }
  if (rc) {
    log_warn(e->name, NULL, "cannot build the page map: %s", why);
    pagemap_destroy(&m);
    r->rebuild_failed = 1;
    return;
  }
  pagemap_destroy(&r->map);
  r->map = m;
  r->valid = 1;
  log_debug(e->name, NULL, "page map built: %u pages in %.1fms", m.n,
            (time_mono_ns() - t0) / 1e6);
  resync_save(e);
}

void resync_maintain(struct engine *e) {
  struct resync *r = &e->rs;
  if (!e->gen[0] || e->pin < 0)
    return;
  if (!r->valid) {
    if (!r->rebuild_failed)
      rebuild(e);
    return;
  }
  if (r->unsaved >= save_threshold(r) &&
      time_mono_ns() - r->saved_ns >= r->save_period_ns)
    resync_save(e);
}

/* --- the resync itself --- */

/* A WAL lifetime under construction in a .tmp shadow file. */
struct seg {
  int fd;
  int big_endian;
  uint32_t page_size, salt1, salt2;
  uint32_t s0, s1;
  int64_t size;
  uint8_t *out; /* frames waiting to be written */
  size_t out_n, out_cap;
  uint8_t last_hdr[WAL_FRAME_HEADER_SIZE];
};

static int seg_flush(struct seg *g) {
  if (!g->out_n)
    return 0;
  int rc = pwrite_full(g->fd, g->out, g->out_n, (off_t)g->size);
  g->size += (int64_t)g->out_n;
  g->out_n = 0;
  return rc;
}

static int seg_frame(struct seg *g, uint32_t pgno, uint32_t commit,
                     const uint8_t *page) {
  size_t fs = (size_t)wal_frame_size(g->page_size);
  if (g->out_n + fs > g->out_cap) {
    int rc = seg_flush(g);
    if (rc)
      return rc;
  }
  uint8_t *f = g->out + g->out_n;
  put_be32(f, pgno);
  put_be32(f + 4, commit);
  put_be32(f + 8, g->salt1);
  put_be32(f + 12, g->salt2);
  wal_checksum(g->big_endian, f, 8, &g->s0, &g->s1);
  wal_checksum(g->big_endian, page, g->page_size, &g->s0, &g->s1);
  put_be32(f + 16, g->s0);
  put_be32(f + 20, g->s1);
  memcpy(f + WAL_FRAME_HEADER_SIZE, page, g->page_size);
  memcpy(g->last_hdr, f, WAL_FRAME_HEADER_SIZE);
  g->out_n += fs;
  return 0;
}

/* The header of the lifetime after `prev`: what SQLite itself would write
 * at a restart (checkpoint sequence and salt-1 one more, a new salt-2). */
static void seg_header(const struct wal_header *prev, uint8_t hb[32],
                       struct seg *g) {
  uint32_t salt2;
  if (getrandom(&salt2, sizeof(salt2), 0) != sizeof(salt2))
    salt2 = (uint32_t)time_mono_ns();
  put_be32(hb, prev->magic);
  put_be32(hb + 4, 3007000);
  put_be32(hb + 8, prev->page_size == 65536 ? 1 : prev->page_size);
  put_be32(hb + 12, prev->ckpt_seq + 1);
  put_be32(hb + 16, prev->salt1 + 1);
  put_be32(hb + 20, salt2);
  uint32_t s0 = 0, s1 = 0;
  wal_checksum(prev->big_endian, hb, 24, &s0, &s1);
  put_be32(hb + 24, s0);
  put_be32(hb + 28, s1);
  g->big_endian = prev->big_endian;
  g->page_size = prev->page_size;
  g->salt1 = prev->salt1 + 1;
  g->salt2 = salt2;
  g->s0 = s0;
  g->s1 = s1;
  g->size = WAL_HEADER_SIZE;
}

struct diff {
  uint32_t npages;  /* database pages now */
  uint32_t changed; /* frames written */
  uint64_t *h;      /* hash of every page now (owned) */
};

/* Hashes every page of the (frozen) database file, writing each page that
 * differs from m as a frame of g; the last frame is the commit. */
static int diff_pages(struct engine *e, const struct pagemap *m, struct seg *g,
                      struct diff *d, char *why, size_t wlen) {
  uint32_t ps = e->page_size;
  struct stat sb;
  if (fstat(e->db_fd, &sb))
    return -errno;
  if (sb.st_size % ps || sb.st_size / ps > PAGEMAP_MAX_PAGES ||
      sb.st_size == 0) {
    snprintf(why, wlen, "database file size %lld is not a page count",
             (long long)sb.st_size);
    return 1;
  }
  d->npages = (uint32_t)(sb.st_size / ps);
  d->changed = 0;
  d->h = xmalloc((size_t)d->npages * sizeof(uint64_t));
  size_t per = (size_t)MAX(1, READ_CHUNK / (int64_t)ps);
  uint8_t *buf = xmalloc(per * ps), *pending = xmalloc(ps);
  uint32_t pending_pgno = 0;
  int rc = 0;
  for (uint32_t p = 0; !rc && p < d->npages;) {
    size_t n = MIN(per, (size_t)(d->npages - p));
    ssize_t got = pread_full(e->db_fd, buf, n * ps, (off_t)p * ps);
    if (got != (ssize_t)(n * ps)) {
      rc = got < 0 ? (int)got : -EIO;
      break;
    }
    for (size_t i = 0; !rc && i < n; i++) {
      uint32_t pgno = p + (uint32_t)i + 1;
      uint64_t h = pagemap_hash(buf + i * ps, ps);
      d->h[pgno - 1] = h;
      if (pgno <= m->n && m->h[pgno - 1] == h)
        continue;
      /* One frame behind: the last one written must be the commit. */
      if (pending_pgno)
        rc = seg_frame(g, pending_pgno, 0, pending);
      memcpy(pending, buf + i * ps, ps);
      pending_pgno = pgno;
      d->changed++;
    }
    p += (uint32_t)n;
  }
  if (!rc && !pending_pgno && d->npages != m->n) {
    /* Only the size changed: page 1 carries the commit. */
    if (pread_full(e->db_fd, pending, ps, 0) != (ssize_t)ps)
      rc = -EIO;
    pending_pgno = 1;
    d->changed++;
  }
  if (!rc && pending_pgno)
    rc = seg_frame(g, pending_pgno, d->npages, pending);
  if (!rc)
    rc = seg_flush(g);
  if (rc)
    snprintf(why, wlen, "resync of %s: %s", e->db_path, err_str(rc));
  free(buf);
  free(pending);
  return rc;
}

/* Writes the resync segment as shadow file index + 1 (via a .tmp file
 * renamed once durable: it exists whole or not at all). */
static int write_segment(struct engine *e, const struct pagemap *m,
                         const char *gen, uint32_t index,
                         const struct shadow_state *st, struct diff *d,
                         struct seg *g, uint8_t hb[32], char *why,
                         size_t wlen) {
  char *final = shadow_wal_path(e->meta, gen, index + 1);
  char *tmp = xasprintf("%s.tmp", final);
  memset(g, 0, sizeof(*g));
  g->fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  int rc = 0;
  if (g->fd < 0) {
    rc = -errno;
    snprintf(why, wlen, "create %s: %s", tmp, strerror(errno));
    goto out;
  }
  seg_header(&st->hdr, hb, g);
  g->out_cap = (size_t)wal_frame_size(g->page_size) *
               (size_t)MAX(1, READ_CHUNK / wal_frame_size(g->page_size));
  g->out = xmalloc(g->out_cap);
  rc = pwrite_full(g->fd, hb, WAL_HEADER_SIZE, 0);
  if (!rc)
    rc = diff_pages(e, m, g, d, why, wlen);
  if (!rc && d->changed && fdatasync(g->fd))
    rc = -errno;
  close(g->fd);
  free(g->out);
  g->out = NULL;
  if (rc || !d->changed) {
    unlink(tmp);
    goto out;
  }
  if (rename(tmp, final)) {
    rc = -errno;
    snprintf(why, wlen, "rename %s: %s", tmp, strerror(errno));
    unlink(tmp);
    goto out;
  }
  char *dir = shadow_wal_dir(e->meta, gen);
  fsync_dir(dir);
  free(dir);
out:
  free(tmp);
  free(final);
  return rc;
}

int resync_run(struct engine *e, const char *why, char *unusable, size_t ulen) {
  struct resync *r = &e->rs;
  char gen[GEN_LEN + 1], w[320];
  uint32_t index;
  struct shadow_state st;
  unusable[0] = '\0';
  if (shadow_read_generation(e->meta, gen) ||
      shadow_max_index(e->meta, gen, &index))
    return 1; /* nothing to continue: the caller's reason says why */
  char *spath = shadow_wal_path(e->meta, gen, index);
  int rc = shadow_load(spath, &st);
  free(spath);
  if (rc)
    return 1;
  if (index + 2 > MAX_WAL_INDEX) {
    snprintf(unusable, ulen, "max index exceeded");
    return 1;
  }
  int64_t t0 = time_mono_ns(), replayed = 0;
  struct pagemap m;
  pagemap_init(&m, 0);
  rc = load_map(e, gen, &m, w, sizeof(w));
  if (!rc)
    rc = bring_forward(e, &m, index, st.size, &replayed, w, sizeof(w));
  if (rc) {
    snprintf(unusable, ulen, "page map %s", w);
    pagemap_destroy(&m);
    return 1;
  }
  /* No checkpoint may change the database file while we read it. */
  if ((rc = engine_wait_checkpoint_lock(e, CKPT_LOCK_WAIT_MS))) {
    snprintf(e->m->err, sizeof(e->m->err),
             "resync waits: the checkpoint lock of %s-shm is held by "
             "another process",
             e->db_path);
    pagemap_destroy(&m);
    return rc;
  }
  struct diff d = {0};
  struct seg g;
  uint8_t hb[WAL_HEADER_SIZE];
  rc = write_segment(e, &m, gen, index, &st, &d, &g, hb, w, sizeof(w));
  if (rc > 0) {
    snprintf(unusable, ulen, "%s", w);
  } else if (rc < 0) {
    snprintf(e->m->err, sizeof(e->m->err), "%s", w[0] ? w : err_str(rc));
  }
  if (rc) {
    free(d.h);
    pagemap_destroy(&m);
    return rc;
  }
  /* The map is now the database file, exactly. */
  free(m.h);
  m.h = d.h;
  m.n = m.len = m.cap = d.npages;
  memcpy(e->gen, gen, sizeof(gen));
  int64_t shipped = d.changed ? g.size : 0;
  if (d.changed) {
    e->index = index + 1;
    memcpy(e->hdr_raw, hb, WAL_HEADER_SIZE);
    wal_header_parse(hb, &e->hdr);
    e->shadow_size = g.size;
    e->s0 = g.s0;
    e->s1 = g.s1;
    memcpy(e->last_frame_hdr, g.last_hdr, sizeof(g.last_hdr));
  } else {
    e->index = index;
    e->hdr = st.hdr;
    e->shadow_size = st.size;
  }
  e->page_size = m.page_size;
  if (e->shadow_fd >= 0)
    close(e->shadow_fd);
  e->shadow_fd = -1;
  e->shadow_dirty = 0;
  pagemap_destroy(&r->map);
  r->map = m;
  r->valid = 1;
  r->rebuild_failed = 0;
  resync_save(e);
  e->stats.resyncs++;
  e->stats.resync_pages += d.changed;
  e->stats.resync_bytes += shipped;
  char pos[48];
  struct pos at = {.index = index, .offset = st.size};
  memcpy(at.gen, gen, sizeof(gen));
  pos_format(&at, pos);
  if (d.changed)
    log_info(e->name, NULL,
             "resync: %s: %u of %u pages differ from the replicated state at "
             "%s; shipped %lld bytes as wal index %08x of the same "
             "generation (%.0fms)",
             why, d.changed, d.npages, pos, (long long)shipped, index + 1,
             (time_mono_ns() - t0) / 1e6);
  else
    log_info(e->name, NULL,
             "resync: %s: the database file matches the replicated state at "
             "%s; continuing the generation (%.0fms)",
             why, pos, (time_mono_ns() - t0) / 1e6);
  return 0;
}
