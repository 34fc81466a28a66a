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
#include "base/util.h"

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
  char *path = path_join(meta, SHADOW_STOP_FILE);
  struct buf b;
  int rc = file_read_all(path, 512, &b);
  if (rc) {
    free(path);
    return ERR_NOT_FOUND;
  }
  unlink(path);
  free(path);
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
