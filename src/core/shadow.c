#include "core/shadow.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "core/engine.h"

/* --- the shadow WAL writer (the engine's state, on its job's thread) --- */

#define COPY_CHUNK (1 << 20)
/* Writeback of the shadow's new bytes is started (sync_file_range) once
 * this much has been appended since the last start or fsync, not after
 * every copy round: at full speed a round is a few kilobytes, and each
 * start queues I/O beside the application's commit fsyncs. */
#define WRITEBACK_BYTES (1 << 20)

/* One copy buffer per pool thread, reused by every database it serves:
 * no allocation (and page faults) per copy round, and memory bounded by
 * the number of threads, not of databases. */
static _Thread_local uint8_t *t_copy_buf;
static _Thread_local size_t t_copy_cap;

static uint8_t *copy_buf(size_t n) {
  if (t_copy_cap < n) {
    free(t_copy_buf);
    t_copy_buf = xmalloc(n);
    t_copy_cap = n;
  }
  return t_copy_buf;
}
/* Appends committed frames from the real WAL, starting at shadow_size,
 * checking salts and the checksum chain.  Frames of a transaction still
 * being written are copied speculatively and cut off again, so the WAL is
 * read once. */
static int copy_frames(struct engine *e) {
  if (e->shadow_fd < 0) {
    /* A failed restart could not reopen the current file (engine_sync). */
    int orc = shadow_open_current(e, 0);
    if (orc)
      return orc;
  }
  int64_t fs = wal_frame_size(e->hdr.page_size);
  size_t nframes = (size_t)MAX(1, COPY_CHUNK / fs);
  uint8_t *buf = copy_buf((size_t)fs * nframes);
  struct wal_scan scan;
  wal_scan_resume(&scan, &e->hdr, e->shadow_size, e->s0, e->s1);
  int64_t written_end = e->shadow_size;
  /* The last commit frame's header, kept only once it is in the shadow:
   * sync_copy checks the WAL still holds it at shadow_size. */
  uint8_t last_hdr[WAL_FRAME_HEADER_SIZE];
  memcpy(last_hdr, e->last_frame_hdr, sizeof(last_hdr));
  int rc = 0;
  for (;;) {
    ssize_t r =
        pread_full(e->wal_fd, buf, (size_t)fs * nframes, (off_t)scan.end);
    if (r < 0) {
      rc = (int)r;
      engine_set_err(e, "read %s: %s", e->wal_path, strerror(-rc));
      break;
    }
    size_t n = (size_t)r / (size_t)fs, i;
    int64_t start = scan.end;
    for (i = 0; i < n; i++) {
      if (!wal_scan_frame(&scan, buf + i * (size_t)fs))
        break;
      resync_note_frame(e, buf + i * (size_t)fs);
      if (scan.commit_end == scan.end)
        memcpy(last_hdr, buf + i * (size_t)fs, WAL_FRAME_HEADER_SIZE);
    }
    if (i > 0) {
      rc = pwrite_full(e->shadow_fd, buf, (size_t)i * (size_t)fs, (off_t)start);
      if (rc) {
        engine_set_err(e, "write shadow wal %s/%08x.wal: %s", e->gen, e->index,
                       strerror(-rc));
        break;
      }
      written_end = start + (int64_t)i * fs;
    }
    if (i < n || n < nframes)
      break;
  }
  if (rc) {
    resync_round_end(e, 0);
    /* Drop whatever this round wrote; the next round starts over (and
     * writes from shadow_size again, so a failed cut only leaves bytes
     * past the last commit, which shadow_load cuts). */
    if (ftruncate(e->shadow_fd, (off_t)e->shadow_size)) {
      size_t l = strlen(e->m->err);
      snprintf(e->m->err + l, sizeof(e->m->err) - l, "; truncate back: %s",
               strerror(errno));
    }
    return rc;
  }
  /* Drop frames of a transaction that is still being written. */
  if (written_end > scan.commit_end &&
      ftruncate(e->shadow_fd, (off_t)scan.commit_end)) {
    rc = -errno;
    resync_round_end(e, 0);
    engine_set_err(e, "truncate shadow wal: %s", strerror(errno));
    return rc;
  }
  /* The page map follows the committed frames only (core/resync.h). */
  resync_round_end(e, (scan.commit_end - e->shadow_size) / fs);
  if (scan.commit_end > e->shadow_size) {
    /* Start writing the new bytes back now, without waiting: a later
     * fsync (ours, or the application's on the same filesystem) then has
     * little left to flush.  In batches of WRITEBACK_BYTES: the whole
     * file's dirty pages (the earlier rounds' too). */
    e->shadow_unstarted += scan.commit_end - e->shadow_size;
    if (e->shadow_unstarted >= WRITEBACK_BYTES) {
      sync_file_range(e->shadow_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
      e->shadow_unstarted = 0;
    }
    e->stats.total_wal_bytes += scan.commit_end - e->shadow_size;
    e->shadow_size = scan.commit_end;
    e->s0 = scan.commit_s0;
    e->s1 = scan.commit_s1;
    memcpy(e->last_frame_hdr, last_hdr, sizeof(last_hdr));
    e->shadow_dirty = 1;
  }
  return 0;
}

/* --- a full disk (engine.h: disk_full) --- */

/* How often a full disk is tried again. */
#define DISK_RETRY_NS (1 * NS_PER_SEC)

static int is_full(int rc) {
  return rc == -ENOSPC || rc == -EDQUOT;
}

/* Scans the committed frames past wal_end, writing nothing: they stay in
 * the pinned WAL and the replicas upload them from there. */
static int scan_frames(struct engine *e) {
  int64_t fs = wal_frame_size(e->hdr.page_size);
  size_t nframes = (size_t)MAX(1, COPY_CHUNK / fs);
  uint8_t *buf = copy_buf((size_t)fs * nframes);
  struct wal_scan scan;
  wal_scan_resume(&scan, &e->hdr, e->wal_end, e->w_s0, e->w_s1);
  for (;;) {
    ssize_t r =
        pread_full(e->wal_fd, buf, (size_t)fs * nframes, (off_t)scan.end);
    if (r < 0) {
      engine_set_err(e, "read %s: %s", e->wal_path, strerror((int)-r));
      return (int)r;
    }
    size_t n = (size_t)r / (size_t)fs, i;
    for (i = 0; i < n; i++)
      if (!wal_scan_frame(&scan, buf + i * (size_t)fs))
        break;
    if (i < n || n < nframes)
      break;
  }
  if (scan.commit_end > e->wal_end) {
    e->wal_end = scan.commit_end;
    e->w_s0 = scan.commit_s0;
    e->w_s1 = scan.commit_s1;
  }
  return 0;
}

/* The shadow write failed for want of space: from now on scan only. */
void shadow_disk_full(struct engine *e) {
  if (!e->disk_full) {
    e->disk_full = 1;
    e->wal_end = e->shadow_size;
    e->w_s0 = e->s0;
    e->w_s1 = e->s1;
    log_error(e->name, NULL,
              "disk full: %s; the shadow wal cannot grow: uploading from the "
              "wal, no checkpoint until there is space again",
              e->m->err);
  }
  e->full_retry_ns = time_mono_ns() + DISK_RETRY_NS;
  e->m->err[0] = '\0';
}

int shadow_copy_frames(struct engine *e) {
  if (e->disk_full && time_mono_ns() < e->full_retry_ns)
    return scan_frames(e);
  int rc = 0;
  if (e->no_file) {
    /* The WAL restarted while the disk was full: start the file now. */
    rc = shadow_start_index(e);
    if (!rc)
      e->no_file = 0;
    else {
      char *path = shadow_wal_path(e->meta, e->gen, e->index);
      unlink(path);
      free(path);
      close(e->shadow_fd);
      e->shadow_fd = -1;
      e->shadow_size = WAL_HEADER_SIZE;
    }
  }
  if (!rc)
    rc = copy_frames(e);
  if (is_full(rc)) {
    shadow_disk_full(e);
    return scan_frames(e);
  }
  if (!rc && e->disk_full && e->shadow_size >= e->wal_end) {
    e->disk_full = 0;
    log_info(e->name, NULL,
             "disk space available again: the shadow wal has caught up "
             "(generation=%s index=%08x size=%lld)",
             e->gen, e->index, (long long)e->shadow_size);
  }
  return rc;
}

int shadow_open_current(struct engine *e, int create) {
  if (e->shadow_fd >= 0) {
    close(e->shadow_fd);
    e->shadow_fd = -1;
  }
  char *dir = shadow_wal_dir(e->meta, e->gen);
  int rc = mkdir_p(dir, 0700);
  free(dir);
  if (rc) {
    engine_set_err(e, "create %s: %s", e->meta, strerror(-rc));
    return rc;
  }
  char *path = shadow_wal_path(e->meta, e->gen, e->index);
  e->shadow_fd =
      open(path, O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0600);
  if (e->shadow_fd < 0) {
    rc = -errno;
    engine_set_err(e, "open %s: %s", path, strerror(errno));
  }
  free(path);
  return rc;
}

/* Starts shadow file e->index with the header in e->hdr_raw. */
int shadow_start_index(struct engine *e) {
  /* A new index never replaces frames: replicas may have uploaded them,
   * and one that had not would skip them. */
  char *path = shadow_wal_path(e->meta, e->gen, e->index);
  struct stat st;
  if (stat(path, &st) == 0 && st.st_size > WAL_HEADER_SIZE)
    log_error(e->name, NULL,
              "shadow wal %s already holds %lld bytes: starting it again "
              "drops them",
              path, (long long)st.st_size);
  free(path);
  int rc = shadow_open_current(e, 1);
  if (rc)
    return rc;
  rc = pwrite_full(e->shadow_fd, e->hdr_raw, WAL_HEADER_SIZE, 0);
  if (rc) {
    engine_set_err(e, "write shadow wal header: %s", strerror(-rc));
    return rc;
  }
  e->shadow_size = WAL_HEADER_SIZE;
  e->s0 = e->hdr.cksum1;
  e->s1 = e->hdr.cksum2;
  memset(e->last_frame_hdr, 0, sizeof(e->last_frame_hdr));
  e->shadow_dirty = 1;
  e->wal_end = e->shadow_size; /* (a full disk: the scan starts over) */
  e->w_s0 = e->s0;
  e->w_s1 = e->s1;
  return 0;
}

int shadow_fsync(struct engine *e) {
  if (!e->shadow_dirty || e->shadow_fd < 0)
    return 0;
  if (fdatasync(e->shadow_fd)) {
    engine_set_err(e, "fsync shadow wal: %s", strerror(errno));
    return -errno;
  }
  e->shadow_dirty = 0;
  e->shadow_unstarted = 0;
  return 0;
}

int shadow_read_generation(const char *meta, char gen[GEN_LEN + 1]) {
  char *path = path_join(meta, "generation");
  struct buf b;
  int rc = file_read_all(path, 4096, &b);
  free(path);
  if (rc)
    return ERR_NO_GENERATION;
  /* Trim whitespace like Litestream's strings.TrimSpace. */
  size_t s = 0, e = b.len;
  while (s < e && (b.data[s] == ' ' || b.data[s] == '\n' || b.data[s] == '\r' ||
                   b.data[s] == '\t'))
    s++;
  while (e > s && (b.data[e - 1] == ' ' || b.data[e - 1] == '\n' ||
                   b.data[e - 1] == '\r' || b.data[e - 1] == '\t'))
    e--;
  char tmp[GEN_LEN + 1];
  rc = ERR_NO_GENERATION;
  if (e - s == GEN_LEN) {
    memcpy(tmp, b.data + s, GEN_LEN);
    tmp[GEN_LEN] = '\0';
    if (gen_is_valid(tmp)) {
      memcpy(gen, tmp, GEN_LEN + 1);
      rc = 0;
    }
  }
  buf_destroy(&b);
  return rc;
}

int shadow_write_generation(const char *meta, const char *gen) {
  char *path = path_join(meta, "generation");
  char line[GEN_LEN + 2];
  snprintf(line, sizeof(line), "%s\n", gen);
  int rc = file_write_atomic(path, line, strlen(line), 0600);
  free(path);
  return rc;
}

int shadow_remove_generation_file(const char *meta) {
  char *path = path_join(meta, "generation");
  int rc = unlink(path) && errno != ENOENT ? -errno : 0;
  free(path);
  return rc;
}

char *shadow_gen_dir(const char *meta, const char *gen) {
  return xasprintf("%s/generations/%s", meta, gen);
}

char *shadow_wal_dir(const char *meta, const char *gen) {
  return xasprintf("%s/generations/%s/wal", meta, gen);
}

char *shadow_wal_path(const char *meta, const char *gen, uint32_t index) {
  return xasprintf("%s/generations/%s/wal/%08x.wal", meta, gen, index);
}

int shadow_max_index(const char *meta, const char *gen, uint32_t *index) {
  char *dir = shadow_wal_dir(meta, gen);
  DIR *d = opendir(dir);
  free(dir);
  if (!d)
    return ERR_NOT_FOUND;
  struct dirent *de;
  int found = 0;
  uint32_t best = 0;
  while ((de = readdir(d))) {
    uint32_t i;
    if (parse_shadow_wal_name(de->d_name, &i))
      continue;
    if (!found || i > best)
      best = i;
    found = 1;
  }
  closedir(d);
  if (!found)
    return ERR_NOT_FOUND;
  *index = best;
  return 0;
}

static void remove_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    char *p = path_join(dir, de->d_name);
    struct stat st;
    if (!lstat(p, &st)) {
      if (S_ISDIR(st.st_mode))
        remove_tmp_files(p);
      else if (str_has_suffix(de->d_name, ".tmp"))
        unlink(p);
    }
    free(p);
  }
  closedir(d);
}

int shadow_clean(const char *meta, const char *keep) {
  remove_tmp_files(meta);
  char *gens = path_join(meta, "generations");
  DIR *d = opendir(gens);
  if (!d) {
    free(gens);
    return 0;
  }
  struct dirent *de;
  int rc = 0;
  while ((de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    if (keep && !strcmp(de->d_name, keep))
      continue;
    char *p = path_join(gens, de->d_name);
    int r = rm_rf(p);
    if (r && !rc)
      rc = r;
    free(p);
  }
  closedir(d);
  free(gens);
  return rc;
}

int shadow_prune(const char *meta, const char *gen, uint32_t below) {
  char *dir = shadow_wal_dir(meta, gen);
  DIR *d = opendir(dir);
  if (!d) {
    free(dir);
    return 0;
  }
  struct dirent *de;
  while ((de = readdir(d))) {
    uint32_t i;
    if (parse_shadow_wal_name(de->d_name, &i) || i >= below)
      continue;
    char *p = path_join(dir, de->d_name);
    unlink(p);
    free(p);
  }
  closedir(d);
  free(dir);
  return 0;
}

int shadow_release(const char *meta, const char *gen, uint32_t below) {
  char *dir = shadow_wal_dir(meta, gen);
  DIR *d = opendir(dir);
  if (!d) {
    free(dir);
    return 0;
  }
  struct dirent *de;
  int64_t freed = 0;
  while ((de = readdir(d))) {
    uint32_t i;
    if (parse_shadow_wal_name(de->d_name, &i) || i >= below)
      continue;
    char *p = path_join(dir, de->d_name);
    int fd = open(p, O_RDWR | O_CLOEXEC);
    struct stat sb;
    if (fd >= 0 && !fstat(fd, &sb) && sb.st_blocks > 0) {
      int64_t before = (int64_t)sb.st_blocks;
      if (!fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0,
                     sb.st_size) &&
          !fstat(fd, &sb) && sb.st_blocks < before)
        freed += (before - (int64_t)sb.st_blocks) * 512;
    }
    if (fd >= 0)
      close(fd);
    free(p);
  }
  closedir(d);
  free(dir);
  return freed > INT32_MAX ? INT32_MAX : (int)freed;
}

int shadow_load(const char *path, struct shadow_state *out) {
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0)
    return -errno;
  uint8_t h[WAL_HEADER_SIZE];
  ssize_t n = pread_full(fd, h, sizeof(h), 0);
  int rc = 0;
  struct shadow_state st;
  memset(&st, 0, sizeof(st));
  if (n != WAL_HEADER_SIZE || wal_header_parse(h, &st.hdr)) {
    rc = ERR_WAL_HEADER;
    goto out;
  }
  struct wal_scan scan;
  wal_scan_init(&scan, &st.hdr);
  int64_t fsz = wal_frame_size(st.hdr.page_size);
  size_t chunk_frames = (size_t)MAX(1, (4 << 20) / fsz);
  uint8_t *buf = xmalloc((size_t)fsz * chunk_frames);
  int64_t off = WAL_HEADER_SIZE;
  for (;;) {
    ssize_t r = pread_full(fd, buf, (size_t)fsz * chunk_frames, (off_t)off);
    if (r < 0) {
      rc = (int)r;
      break;
    }
    size_t nf = (size_t)r / (size_t)fsz, i;
    for (i = 0; i < nf; i++) {
      if (!wal_scan_frame(&scan, buf + i * (size_t)fsz))
        break;
      if (scan.commit_end == scan.end)
        memcpy(st.last_frame_hdr, buf + i * (size_t)fsz, WAL_FRAME_HEADER_SIZE);
    }
    off += (int64_t)i * fsz;
    if (i < nf || nf < chunk_frames)
      break;
  }
  free(buf);
  if (rc)
    goto out;
  st.size = scan.commit_end;
  st.s0 = scan.commit_s0;
  st.s1 = scan.commit_s1;
  struct stat sb;
  if (!fstat(fd, &sb) && sb.st_size > st.size) {
    /* A torn or uncommitted tail: cut it so appends continue the chain. */
    if (ftruncate(fd, st.size))
      rc = -errno;
  }
  if (!rc)
    *out = st;
out:
  close(fd);
  return rc;
}

int shadow_write_stop(const char *meta, const struct shadow_stop *st) {
  char line[256];
  int n = snprintf(line, sizeof(line),
                   "v1 %s %u %lld %llu %llu %lld %lld %lld\n", st->gen,
                   st->index, (long long)st->size, (unsigned long long)st->dev,
                   (unsigned long long)st->ino, (long long)st->db_size,
                   (long long)st->mtime_ns, (long long)st->ctime_ns);
  char *path = path_join(meta, SHADOW_STOP_FILE);
  int rc = file_write_atomic(path, line, (size_t)n, 0600);
  free(path);
  return rc;
}

int shadow_take_stop(const char *meta, struct shadow_stop *out) {
  int rc = shadow_read_stop(meta, out);
  char *path = path_join(meta, SHADOW_STOP_FILE);
  unlink(path);
  free(path);
  return rc;
}

int shadow_read_stop(const char *meta, struct shadow_stop *out) {
  char *path = path_join(meta, SHADOW_STOP_FILE);
  struct buf b;
  int rc = file_read_all(path, 512, &b);
  free(path);
  if (rc)
    return ERR_NOT_FOUND;
  buf_append(&b, "", 1); /* NUL */
  struct shadow_stop st;
  char gen[64];
  unsigned long long dev, ino;
  long long size, db_size, mt, ct;
  rc = ERR_NOT_FOUND;
  if (sscanf((const char *)b.data, "v1 %63s %u %lld %llu %llu %lld %lld %lld",
             gen, &st.index, &size, &dev, &ino, &db_size, &mt, &ct) == 8 &&
      strlen(gen) == GEN_LEN && gen_is_valid(gen)) {
    memcpy(st.gen, gen, GEN_LEN + 1);
    st.size = size;
    st.dev = dev;
    st.ino = ino;
    st.db_size = db_size;
    st.mtime_ns = mt;
    st.ctime_ns = ct;
    *out = st;
    rc = 0;
  }
  buf_destroy(&b);
  return rc;
}
