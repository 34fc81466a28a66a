/*
 * The file backend: a replica in a local directory (spec 8.5), e.g. another
 * disk or a network mount.  Keys map to paths below the root directory
 * (`path` in the config, absolute).
 *
 * Every operation runs its blocking I/O on the thread pool and calls back
 * on the loop thread, so a slow or hung mount never stalls the loop.
 *
 *  put   writes <final>.tmp (parent directories created), fsyncs it,
 *        renames it over the final name and fsyncs the directory (Litestream
 *        does not fsync the directory; a crash could then lose a rename it
 *        already counted as uploaded).  New files are 0600 and new
 *        directories 0700: unlike Litestream we do not copy the database
 *        file's mode and owner (the daemon rarely runs as another user than
 *        the database owner, and a replica directory readable by fewer
 *        people is the safe default).
 *  get   reads [off, off+len) (len < 0: to the end) into memory or into an
 *        fd; a missing file is ERR_NOT_FOUND.
 *  list  S3 semantics on top of directories: every regular file whose key
 *        starts with the prefix; with a delimiter, entries below the next
 *        '/' fold into common prefixes (a directory with no file below it
 *        is not listed, as S3 has no empty "directories").  In-flight
 *        uploads (*.tmp) are not listed.  A missing directory lists empty.
 *  del   unlinks, ignoring missing files, then removes parent directories
 *        left empty, up to (not including) generations/, so a deleted
 *        generation leaves no empty directory behind.
 *  sweep removes *.tmp files below generations/ that a killed upload left:
 *        only those no upload holds (a put keeps an flock on its .tmp while
 *        it writes, so no sluice process's upload is ever touched) and
 *        whose mtime is older than the given age (opening with O_TRUNC
 *        renews it: a writer without flock, or one between its open and
 *        its flock, is left alone too).
 */
#include "backends/backend.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "base/util.h"
#include "loop/loop.h"

#define FILE_MODE 0600
#define DIR_MODE 0700
#define COPY_CHUNK (1u << 20)

struct file_priv {
  /* absolute, no trailing '/' (except for "/" itself); inside b->desc
   * ("file://" ROOT: one copy per replica, 100,000 in one process) */
  const char *root;
};

enum fop { FOP_PUT, FOP_GET, FOP_LIST, FOP_DEL, FOP_SWEEP, FOP_COND };

struct fjob {
  struct backend *b;
  enum fop op;
  char *path; /* absolute path of the key (put/get) */
  /* put */
  struct payload payload;
  /* get */
  int64_t off, len;
  struct sink sink;
  /* list */
  char *prefix;
  int delimiter;
  struct obj_list list;
  struct obj_list *out;
  /* del */
  char **keys;
  size_t n_keys;
  /* get_tag, put_cond */
  char *match; /* NULL: only if absent */
  int has_match;
  char *tag; /* the caller's BACKEND_TAG_MAX buffer, written at done */
  char tag_tmp[BACKEND_TAG_MAX];
  /* sweep */
  int64_t min_age_ns;
  size_t removed;
  size_t *removed_out;

  int status;
  char err[512];
  backend_cb cb;
  void *arg;
};

/* strerror is not thread-safe; pool threads use this. */
static const char *errtext(int code, char *buf, size_t n) {
  if (code < 0 && code > -4096)
    return strerror_r(-code, buf, n);
  return err_str(code);
}

static void job_fail(struct fjob *j, int code, const char *op,
                     const char *path) {
  char tmp[128];
  j->status = code;
  snprintf(j->err, sizeof(j->err), "file: %s %s: %s", op, path,
           errtext(code, tmp, sizeof(tmp)));
}

/* Keys must stay below the root: no absolute keys, no ".." elements. */
static int key_is_safe(const char *key) {
  if (key[0] == '/')
    return 0;
  for (const char *p = key; *p;) {
    const char *end = strchr(p, '/');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n == 2 && p[0] == '.' && p[1] == '.')
      return 0;
    p += n;
    if (*p == '/')
      p++;
  }
  return 1;
}

static struct fjob *job_new(struct backend *b, enum fop op, backend_cb cb,
                            void *arg) {
  struct fjob *j = xcalloc(1, sizeof(*j));
  j->b = b;
  j->op = op;
  j->cb = cb;
  j->arg = arg;
  return j;
}

static void job_free(struct fjob *j) {
  free(j->path);
  free(j->match);
  free(j->prefix);
  obj_list_destroy(&j->list);
  for (size_t i = 0; i < j->n_keys; i++)
    free(j->keys[i]);
  free(j->keys);
  free(j);
}

/* Appends the list made on the pool thread to the caller's list. */
static void list_move(struct obj_list *dst, struct obj_list *src) {
  if (!dst->n && !dst->n_prefixes) {
    obj_list_destroy(dst);
    *dst = *src;
    memset(src, 0, sizeof(*src));
    return;
  }
  for (size_t i = 0; i < src->n; i++)
    obj_list_add(dst, src->objs[i].key, src->objs[i].size,
                 src->objs[i].mtime_ns);
  for (size_t i = 0; i < src->n_prefixes; i++)
    obj_list_add_prefix(dst, src->prefixes[i]);
  obj_list_sort(dst);
}

static void on_job_done(void *arg, int status) {
  struct fjob *j = arg;
  if (status && !j->status)
    job_fail(j, status, "run", j->path ? j->path : "job");
  if (!j->status && j->op == FOP_LIST)
    list_move(j->out, &j->list);
  if (j->op == FOP_SWEEP)
    *j->removed_out = j->removed;
  if (!j->status && j->tag)
    memcpy(j->tag, j->tag_tmp, BACKEND_TAG_MAX);
  j->cb(j->arg, j->status, j->status ? j->err : NULL);
  job_free(j);
}

/* --- put --- */

/* Copies len bytes of in_fd from in_off to out_fd at its current offset,
 * in the kernel when it can. */
static int copy_fd(int in_fd, int64_t in_off, int64_t len, int out_fd,
                   int64_t out_off) {
  loff_t ioff = in_off, ooff = out_off;
  int64_t left = len;
  while (left > 0) {
    ssize_t n = copy_file_range(in_fd, &ioff, out_fd, &ooff,
                                (size_t)MIN(left, (int64_t)1 << 30), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
                  errno == EOPNOTSUPP || errno == EBADF))
      break; /* fall back to read/write below */
    if (n < 0)
      return -errno;
    if (n == 0)
      return -EIO; /* source shorter than promised */
    left -= n;
  }
  if (left <= 0)
    return 0;
  uint8_t *b = xmalloc(COPY_CHUNK);
  int rc = 0;
  while (left > 0) {
    size_t want = (size_t)MIN(left, (int64_t)COPY_CHUNK);
    ssize_t r = pread_full(in_fd, b, want, (off_t)ioff);
    if (r < 0) {
      rc = (int)r;
      break;
    }
    if ((size_t)r != want) {
      rc = -EIO;
      break;
    }
    if ((rc = pwrite_full(out_fd, b, want, (off_t)ooff)))
      break;
    ioff += r;
    ooff += r;
    left -= r;
  }
  free(b);
  return rc;
}

static int open_tmp(const char *tmp) {
  /* A concurrent del may remove an emptied parent between our mkdir and
   * open: make the directories again and retry. */
  for (int attempt = 0;; attempt++) {
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, FILE_MODE);
    if (fd >= 0)
      return fd;
    if (errno != ENOENT || attempt == 5)
      return -errno;
    char *dir = path_dir(tmp);
    int rc = mkdir_p(dir, DIR_MODE);
    free(dir);
    if (rc)
      return rc;
  }
}

static void put_work(void *arg) {
  struct fjob *j = arg;
  const struct payload *p = &j->payload;
  char *tmp = xasprintf("%s.tmp", j->path);
  char *dir = path_dir(j->path);
  int fd = open_tmp(tmp);
  int rc;
  if (fd < 0) {
    job_fail(j, fd, "put", j->path);
    goto out;
  }
  /* Held until close: a sweep never removes a .tmp being written. */
  while (flock(fd, LOCK_EX) && errno == EINTR)
    ;
  if (p->data)
    rc = write_full(fd, p->data, (size_t)p->len);
  else
    rc = copy_fd(p->fd, p->off, p->len, fd, 0);
  if (!rc && fsync(fd))
    rc = -errno;
  /* Renamed while the lock is held: the .tmp name never exists unlocked
   * with complete data a sweep could take for a leftover. */
  if (!rc && rename(tmp, j->path))
    rc = -errno;
  if (close(fd) && !rc)
    rc = -errno;
  if (!rc)
    rc = fsync_dir(dir);
  if (rc) {
    unlink(tmp);
    job_fail(j, rc, "put", j->path);
  }
out:
  free(dir);
  free(tmp);
}

/* --- get --- */

static void get_work(void *arg) {
  struct fjob *j = arg;
  int fd = open(j->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    job_fail(j, errno == ENOENT || errno == ENOTDIR ? ERR_NOT_FOUND : -errno,
             "get", j->path);
    return;
  }
  struct stat st;
  int rc = 0;
  if (fstat(fd, &st)) {
    rc = -errno;
    goto out;
  }
  if (!S_ISREG(st.st_mode)) {
    rc = ERR_NOT_FOUND;
    goto out;
  }
  int64_t off = MIN(j->off, (int64_t)st.st_size);
  int64_t n = (int64_t)st.st_size - off;
  if (j->len >= 0 && j->len < n)
    n = j->len;
  if (j->sink.buf) {
    struct buf *b = j->sink.buf;
    if ((rc = buf_reserve(b, (size_t)n)))
      goto out;
    ssize_t r = pread_full(fd, b->data + b->len, (size_t)n, (off_t)off);
    if (r < 0) {
      rc = (int)r;
      goto out;
    }
    b->len += (size_t)r;
  } else {
    rc = copy_fd(fd, off, n, j->sink.fd, j->sink.off);
  }
out:
  close(fd);
  if (rc)
    job_fail(j, rc, "get", j->path);
}

/* --- conditional writes ---
 *
 * get_tag reads the object and hashes it (a file has no version of its
 * own).  put_cond serialises writers on <key>.cas with flock, which the
 * kernel drops when the holder dies (kill -9 leaves no stale mutex), then
 * compares the current content's tag and writes <key>.tmp: created with
 * link() when the object must not exist (fails with EEXIST, like
 * O_EXCL), renamed over it when it must match.  Both are the lease's
 * (lease.c), so they run on the urgent lane (loop.h), not the pool: a
 * renewal queued behind a stop's thousands of database jobs lapsed. */

static void get_tag_work(void *arg) {
  struct fjob *j = arg;
  struct buf *out = j->sink.buf;
  size_t before = out->len;
  get_work(j);
  if (!j->status)
    backend_content_tag(out->data + before, out->len - before, j->tag_tmp);
}

/* The tag of the file at path, or ERR_NOT_FOUND. */
static int current_tag(const char *path, char *tag) {
  struct buf b;
  buf_init(&b, 1 << 20);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  int rc = 0;
  if (fd < 0) {
    rc = errno == ENOENT ? ERR_NOT_FOUND : -errno;
    goto out;
  }
  uint8_t chunk[4096];
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      rc = -errno;
      break;
    }
    if (n == 0)
      break;
    if ((rc = buf_append(&b, chunk, (size_t)n)))
      break;
  }
  close(fd);
  if (!rc)
    backend_content_tag(b.data, b.len, tag);
out:
  buf_destroy(&b);
  return rc;
}

static int write_tmp(const char *tmp, const struct payload *p) {
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, FILE_MODE);
  if (fd < 0)
    return -errno;
  int rc = write_full(fd, p->data, (size_t)p->len);
  if (!rc && fsync(fd))
    rc = -errno;
  if (close(fd) && !rc)
    rc = -errno;
  return rc;
}

/* Under the .cas lock: checks the condition and installs the new file. */
static int cond_install(struct fjob *j, const char *tmp) {
  char cur[BACKEND_TAG_MAX];
  int rc = current_tag(j->path, cur);
  if (rc && rc != ERR_NOT_FOUND)
    return rc;
  if (j->has_match ? rc == ERR_NOT_FOUND || strcmp(cur, j->match)
                   : rc != ERR_NOT_FOUND)
    return ERR_PRECONDITION;
  if ((rc = write_tmp(tmp, &j->payload)))
    return rc;
  if (!j->has_match) {
    rc = link(tmp, j->path) ? (errno == EEXIST ? ERR_PRECONDITION : -errno) : 0;
    unlink(tmp);
  } else if (rename(tmp, j->path)) {
    rc = -errno;
  }
  return rc;
}

static void put_cond_work(void *arg) {
  struct fjob *j = arg;
  char *tmp = xasprintf("%s.tmp", j->path);
  char *cas = xasprintf("%s.cas", j->path);
  char *dir = path_dir(j->path);
  int rc = mkdir_p(dir, DIR_MODE);
  int fd = rc ? -1 : open(cas, O_RDWR | O_CREAT | O_CLOEXEC, FILE_MODE);
  if (!rc && fd < 0)
    rc = -errno;
  while (!rc && flock(fd, LOCK_EX))
    if (errno != EINTR)
      rc = -errno;
  if (!rc)
    rc = cond_install(j, tmp);
  if (!rc)
    rc = fsync_dir(dir);
  if (fd >= 0)
    close(fd); /* drops the lock */
  if (rc) {
    unlink(tmp);
    job_fail(j, rc, "conditional put", j->path);
  } else {
    backend_content_tag(j->payload.data, (size_t)j->payload.len, j->tag_tmp);
  }
  free(dir);
  free(cas);
  free(tmp);
}

/* --- list --- */

struct walk {
  struct fjob *j;
  const char *root;
  struct buf rel; /* key of the directory being read, ends in '/' or "" */
};

static int has_file_below(const char *path, int depth) {
  if (depth > 32)
    return 0;
  DIR *d = opendir(path);
  if (!d)
    return 0;
  struct dirent *de;
  int found = 0;
  while (!found && (de = readdir(d))) {
    if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
      continue;
    struct stat st;
    if (fstatat(dirfd(d), de->d_name, &st, 0))
      continue;
    if (S_ISREG(st.st_mode))
      found = !str_has_suffix(de->d_name, ".tmp");
    else if (S_ISDIR(st.st_mode)) {
      char *sub = path_join(path, de->d_name);
      found = has_file_below(sub, depth + 1);
      free(sub);
    }
  }
  closedir(d);
  return found;
}

/* Lists the directory whose key is w->rel, keeping entries whose name
 * starts with `match`. */
static int walk_dir(struct walk *w, const char *match, int depth) {
  char *dirpath = path_join(w->root, (const char *)w->rel.data);
  DIR *d = opendir(dirpath);
  if (!d) {
    int e = errno;
    free(dirpath);
    return e == ENOENT || e == ENOTDIR ? 0 : -e;
  }
  size_t rel_len = w->rel.len;
  size_t mlen = strlen(match);
  struct dirent *de;
  int rc = 0;
  while (!rc && (errno = 0, de = readdir(d))) {
    const char *name = de->d_name;
    if (!strcmp(name, ".") || !strcmp(name, "..") || strncmp(name, match, mlen))
      continue;
    struct stat st;
    if (fstatat(dirfd(d), name, &st, 0))
      continue; /* vanished meanwhile, or a dangling symlink */
    w->rel.len = rel_len;
    buf_append(&w->rel, name, strlen(name));
    if (S_ISDIR(st.st_mode)) {
      buf_append(&w->rel, "/", 1);
      if (w->j->delimiter) {
        char *sub = path_join(dirpath, name);
        if (has_file_below(sub, 0))
          obj_list_add_prefix(&w->j->list, (const char *)w->rel.data);
        free(sub);
      } else if (depth < 32) {
        rc = walk_dir(w, "", depth + 1);
      }
    } else if (S_ISREG(st.st_mode) && !str_has_suffix(name, ".tmp")) {
      obj_list_add(&w->j->list, (const char *)w->rel.data, (int64_t)st.st_size,
                   time_ns_sat(st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
    }
  }
  if (!rc && !de && errno)
    rc = -errno;
  w->rel.len = rel_len;
  w->rel.data[rel_len] = '\0';
  closedir(d);
  free(dirpath);
  return rc;
}

static void list_work(void *arg) {
  struct fjob *j = arg;
  struct file_priv *fp = j->b->priv;
  const char *slash = strrchr(j->prefix, '/');
  size_t dlen = slash ? (size_t)(slash - j->prefix + 1) : 0;
  struct walk w = {.j = j, .root = fp->root};
  buf_init(&w.rel, 0);
  buf_append(&w.rel, j->prefix, dlen);
  if (!w.rel.data)
    buf_append(&w.rel, "", 0);
  int rc = walk_dir(&w, j->prefix + dlen, 0);
  if (rc) {
    char *path = path_join(fp->root, j->prefix);
    job_fail(j, rc, "list", path);
    free(path);
  } else {
    obj_list_sort(&j->list);
  }
  buf_destroy(&w.rel);
}

/* --- delete --- */

/* Removes the empty directories above key, stopping below generations/
 * (or the root for keys elsewhere). */
static void prune_dirs(const char *root, const char *key) {
  char *rel = xstrdup(key);
  for (;;) {
    char *slash = strrchr(rel, '/');
    if (!slash)
      break;
    *slash = '\0';
    if (!strcmp(rel, "generations"))
      break;
    char *path = path_join(root, rel);
    int r = rmdir(path);
    int e = errno;
    free(path);
    if (r && e != ENOENT)
      break; /* ENOTEMPTY: still in use */
  }
  free(rel);
}

static void del_work(void *arg) {
  struct fjob *j = arg;
  struct file_priv *fp = j->b->priv;
  for (size_t i = 0; i < j->n_keys; i++) {
    char *path = path_join(fp->root, j->keys[i]);
    if (unlink(path) && errno != ENOENT && errno != ENOTDIR) {
      job_fail(j, -errno, "delete", path);
      free(path);
      return;
    }
    free(path);
    prune_dirs(fp->root, j->keys[i]);
  }
}

/* --- sweep --- */

static void sweep_dir(struct fjob *j, int dirfd_, int depth) {
  DIR *d = fdopendir(dirfd_);
  if (!d) {
    close(dirfd_);
    return;
  }
  int64_t now = time_now_ns();
  struct dirent *de;
  while ((de = readdir(d))) {
    const char *name = de->d_name;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
      continue;
    struct stat st;
    if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW))
      continue;
    if (S_ISDIR(st.st_mode)) {
      if (depth < 8) {
        int sub = openat(dirfd(d), name,
                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (sub >= 0)
          sweep_dir(j, sub, depth + 1);
      }
      continue;
    }
    if (!S_ISREG(st.st_mode) || !str_has_suffix(name, ".tmp"))
      continue;
    int fd = openat(dirfd(d), name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
      continue;
    /* Locked and then looked at again: the file that is unlinked is the one
     * checked, old and held by nobody. */
    struct stat st2;
    if (!flock(fd, LOCK_EX | LOCK_NB) && !fstat(fd, &st2) &&
        st2.st_ino == st.st_ino &&
        time_ns_sat(st2.st_mtim.tv_sec, st2.st_mtim.tv_nsec) <=
            now - j->min_age_ns &&
        !unlinkat(dirfd(d), name, 0))
      j->removed++;
    close(fd);
  }
  closedir(d);
}

static void sweep_work(void *arg) {
  struct fjob *j = arg;
  struct file_priv *fp = j->b->priv;
  char *gens = path_join(fp->root, "generations");
  int fd = open(gens, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  free(gens);
  if (fd >= 0)
    sweep_dir(j, fd, 0);
}

static void file_sweep(struct backend *b, int64_t min_age_ns, size_t *removed,
                       backend_cb cb, void *arg) {
  struct fjob *j = job_new(b, FOP_SWEEP, cb, arg);
  j->min_age_ns = min_age_ns;
  j->removed_out = removed;
  loop_work_submit(sweep_work, on_job_done, j);
}

/* --- ops --- */

static void noop_work(void *arg) {
  (void)arg;
}

static int bad_key(struct backend *b, const char *op, const char *key,
                   backend_cb cb, void *arg) {
  if (key_is_safe(key))
    return 0;
  struct fjob *j = job_new(b, FOP_GET, cb, arg);
  snprintf(j->err, sizeof(j->err), "file: %s %s: invalid key", op, key);
  j->status = -EINVAL;
  /* Still answer asynchronously, as the interface promises. */
  loop_work_submit(noop_work, on_job_done, j);
  return 1;
}

static void file_put(struct backend *b, const char *key,
                     const struct payload *p, backend_cb cb, void *arg) {
  if (bad_key(b, "put", key, cb, arg))
    return;
  struct file_priv *fp = b->priv;
  struct fjob *j = job_new(b, FOP_PUT, cb, arg);
  j->path = path_join(fp->root, key);
  j->payload = *p;
  loop_work_submit(put_work, on_job_done, j);
}

static void file_get(struct backend *b, const char *key, int64_t off,
                     int64_t len, const struct sink *s, backend_cb cb,
                     void *arg) {
  if (bad_key(b, "get", key, cb, arg))
    return;
  struct file_priv *fp = b->priv;
  struct fjob *j = job_new(b, FOP_GET, cb, arg);
  j->path = path_join(fp->root, key);
  j->off = off < 0 ? 0 : off;
  j->len = len;
  j->sink = *s;
  loop_work_submit(get_work, on_job_done, j);
}

static void file_list(struct backend *b, const char *prefix, int delimiter,
                      struct obj_list *out, backend_cb cb, void *arg) {
  if (bad_key(b, "list", prefix, cb, arg))
    return;
  struct fjob *j = job_new(b, FOP_LIST, cb, arg);
  j->prefix = xstrdup(prefix);
  j->delimiter = delimiter;
  j->out = out;
  loop_work_submit(list_work, on_job_done, j);
}

static void file_del(struct backend *b, char *const *keys, size_t n,
                     backend_cb cb, void *arg) {
  for (size_t i = 0; i < n; i++)
    if (bad_key(b, "delete", keys[i], cb, arg))
      return;
  struct fjob *j = job_new(b, FOP_DEL, cb, arg);
  j->keys = xcalloc(n ? n : 1, sizeof(char *));
  for (size_t i = 0; i < n; i++)
    j->keys[i] = xstrdup(keys[i]);
  j->n_keys = n;
  loop_work_submit(del_work, on_job_done, j);
}

static void file_get_tag(struct backend *b, const char *key, struct buf *out,
                         char *tag, backend_cb cb, void *arg) {
  if (bad_key(b, "get", key, cb, arg))
    return;
  struct file_priv *fp = b->priv;
  struct fjob *j = job_new(b, FOP_GET, cb, arg);
  j->path = path_join(fp->root, key);
  j->len = -1;
  j->sink.buf = out;
  j->sink.fd = -1;
  j->tag = tag;
  loop_work_submit_urgent(get_tag_work, on_job_done, j);
}

static void file_put_cond(struct backend *b, const char *key,
                          const uint8_t *data, size_t len, const char *match,
                          char *tag_out, backend_cb cb, void *arg) {
  if (bad_key(b, "put", key, cb, arg))
    return;
  struct file_priv *fp = b->priv;
  struct fjob *j = job_new(b, FOP_COND, cb, arg);
  j->path = path_join(fp->root, key);
  j->payload.data = data;
  j->payload.fd = -1;
  j->payload.len = (int64_t)len;
  j->has_match = match != NULL;
  j->match = match ? xstrdup(match) : NULL;
  j->tag = tag_out;
  loop_work_submit_urgent(put_cond_work, on_job_done, j);
}

static int file_open(struct backend *b, const struct replica_config *cfg,
                     char *err, size_t errlen) {
  if (!cfg->path || !*cfg->path) {
    snprintf(err, errlen, "replica %s: file replica path required",
             cfg->name ? cfg->name : "file");
    return ERR_CONFIG;
  }
  struct file_priv *fp = b->priv;
  char *root = path_abs(cfg->path);
  b->desc = xasprintf("file://%s", root);
  free(root);
  fp->root = b->desc + strlen("file://");
  return 0;
}

static void file_close(struct backend *b) {
  struct file_priv *fp = b->priv;
  fp->root = NULL; /* (b->desc's) */
}

const struct backend_ops backend_file = {
    .name = "file",
    .caps = BACKEND_CAP_RANGE | BACKEND_CAP_COND,
    .priv_size = sizeof(struct file_priv),
    .open = file_open,
    .close = file_close,
    .put = file_put,
    .get = file_get,
    .list = file_list,
    .del = file_del,
    .sweep = file_sweep,
    .get_tag = file_get_tag,
    .put_cond = file_put_cond,
};
