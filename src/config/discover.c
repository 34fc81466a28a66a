/*
 * Directory entries (Litestream 0.5's `dir:` + `pattern:` + `recursive:`):
 * one database per SQLite file found under the directory, each with the
 * entry's options and its own replica path (the entry's joined with the
 * file's path relative to dir).  Used by the daemon (start, SIGHUP) and by
 * the commands, so they all see the same databases.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "config/config.h"
#include "format/names.h"

#define SQLITE_HEADER "SQLite format 3" /* + its NUL: 16 bytes */
#define MAX_DEPTH 64

char *config_join_replica_path(const char *base, const char *rel) {
  return path_join(base, rel);
}

/* "scheme://host/prefix?query" + rel: rel goes at the end of the path. */
static char *join_url(const char *url, const char *rel) {
  const char *q = strchr(url, '?');
  size_t n = q ? (size_t)(q - url) : strlen(url);
  while (n > 0 && url[n - 1] == '/')
    n--;
  return xasprintf("%.*s/%s%s", (int)n, url, rel, q ? q : "");
}

/* Files of a database and sluice's own files never match. */
static int is_side_file(const char *name) {
  return str_has_suffix(name, "-wal") || str_has_suffix(name, "-shm") ||
         str_has_suffix(name, "-journal");
}

static int is_meta_dir(const char *name) {
  return name[0] == '.' && str_has_suffix(name, "-litestream");
}

/* 1: begins with the SQLite header; 0: has no header (yet, if shorter
 * than it); -errno if it cannot be read. */
static const struct config_probe_guard *g_guard;
static int g_scan_warnings;

void config_dir_warnings(int on) {
  g_scan_warnings = on;
}

void config_set_probe_guard(const struct config_probe_guard *g) {
  g_guard = g;
}

static int read_header_unguarded(const char *path, int64_t *size);

static int read_header(const char *path, int64_t *size) {
  if (!g_guard)
    return read_header_unguarded(path, size);
  if (g_guard->begin(g_guard->arg, path)) {
    *size = 16;
    return 2;
  }
  int rc = read_header_unguarded(path, size);
  g_guard->end(g_guard->arg);
  return rc;
}

static int read_header_unguarded(const char *path, int64_t *size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return -errno;
  char hdr[20];
  ssize_t n;
  do
    n = read(fd, hdr, sizeof(hdr));
  while (n < 0 && errno == EINTR);
  int err = n < 0 ? -errno : 0;
  struct stat st;
  *size = fstat(fd, &st) ? 0 : (int64_t)st.st_size;
  close(fd);
  if (err)
    return err;
  if (n < 16 || memcmp(hdr, SQLITE_HEADER, 16))
    return 0;
  /* File format bytes 18 and 19: 2 once in WAL mode. */
  return n == (ssize_t)sizeof(hdr) && hdr[18] == 2 && hdr[19] == 2 ? 2 : 1;
}

static int has_sqlite_header(const char *path) {
  int64_t size;
  return read_header(path, &size) > 0;
}

int config_dir_probe(const char *path) {
  struct stat st;
  if (stat(path, &st))
    return errno == ENOENT || errno == ENOTDIR ? CONFIG_PROBE_GONE
                                               : CONFIG_PROBE_UNREADABLE;
  if (S_ISDIR(st.st_mode))
    return CONFIG_PROBE_DIR;
  if (!S_ISREG(st.st_mode))
    return CONFIG_PROBE_OTHER;
  int64_t size = 0;
  int rc = read_header(path, &size);
  if (rc == 2)
    return CONFIG_PROBE_DB;
  if (rc == 1) {
    /* Not in WAL mode yet: being created (the application's
     * journal_mode=WAL comes next), unless it has been quiet a while. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t age_ms = ((int64_t)now.tv_sec - st.st_mtim.tv_sec) * 1000 +
                     (now.tv_nsec - st.st_mtim.tv_nsec) / 1000000;
    return age_ms < CONFIG_PROBE_SETTLE_MS ? CONFIG_PROBE_SETTLING
                                           : CONFIG_PROBE_DB;
  }
  if (rc < 0)
    return rc == -ENOENT ? CONFIG_PROBE_GONE : CONFIG_PROBE_UNREADABLE;
  /* Created empty and filled a moment later: not a database yet. */
  return size < 16 ? CONFIG_PROBE_SHORT : CONFIG_PROBE_NOTDB;
}

int config_pattern_check(const char *pattern, char *why, size_t n) {
  if (!pattern || !*pattern) {
    snprintf(why, n, "empty pattern");
    return -1;
  }
  if (strchr(pattern, '/')) {
    snprintf(why, n, "a pattern matches file names: it cannot contain '/'");
    return -1;
  }
  /* Go's filepath.Match: an unterminated [ or a trailing \ is an error. */
  for (const char *p = pattern; *p; p++) {
    if (*p == '\\') {
      if (!p[1]) {
        snprintf(why, n, "trailing backslash");
        return -1;
      }
      p++;
    } else if (*p == '[') {
      const char *q = p + 1;
      if (*q == '!' || *q == '^')
        q++;
      if (*q == ']')
        q++;
      while (*q && *q != ']')
        q++;
      if (!*q) {
        snprintf(why, n, "unterminated [ (character class)");
        return -1;
      }
      if (q == p + 1) {
        snprintf(why, n, "empty character class []");
        return -1;
      }
      p = q;
    }
  }
  return 0;
}

static int g_share;

void config_share_dir_replicas(int on) {
  g_share = on;
}

const char *config_db_rel(const struct db_config *d) {
  if (!d->dir || !d->path)
    return "";
  size_t n = strlen(d->dir);
  if (strncmp(d->path, d->dir, n))
    return "";
  const char *r = d->path + n;
  while (*r == '/')
    r++;
  return r;
}

/* A replica of entry e for the database at rel: its path and URL. */
static void own_location(struct replica_config *r, const char *rel) {
  char *p = config_join_replica_path(r->path, rel);
  free(r->path);
  r->path = p;
  if (r->url) {
    p = join_url(r->url, rel);
    free(r->url);
    r->url = p;
  }
}

void config_db_replica(const struct db_config *d, size_t i,
                       struct replica_config *out) {
  config_replica_copy(out, &d->replicas[i]);
  if (d->shared)
    own_location(out, config_db_rel(d));
}

char *config_db_replica_path(const struct db_config *d, size_t i) {
  const char *p = d->replicas[i].path;
  if (d->shared)
    return config_join_replica_path(p, config_db_rel(d));
  return p ? xstrdup(p) : NULL;
}

/* An entry's replicas lease at their root (the entry's replica path). */
static void set_lease_roots(struct db_config *e) {
  for (size_t i = 0; i < e->n_replicas; i++) {
    struct replica_config *r = &e->replicas[i];
    if (!r->lease_root)
      r->lease_root = xstrdup(r->path ? r->path : "");
  }
}

/* The database of entry e for the file at rel (relative to e->dir). */
void config_dir_make_db(const struct db_config *e, const char *rel,
                        struct db_config *d) {
  *d = *e;
  d->path = path_join(e->dir, rel);
  d->meta_path = meta_dir_path(d->path, NULL);
  if (g_share) { /* (set_lease_roots gave e's replicas theirs) */
    d->shared = 1;
    return;
  }
  d->shared = 0;
  d->dir = xstrdup(e->dir);
  d->pattern = xstrdup(e->pattern);
  d->replicas =
      e->n_replicas ? xcalloc(e->n_replicas, sizeof(*d->replicas)) : NULL;
  for (size_t i = 0; i < e->n_replicas; i++) {
    struct replica_config *r = &d->replicas[i];
    config_replica_copy(r, &e->replicas[i]);
    free(r->lease_root);
    r->lease_root = xstrdup(r->path ? r->path : "");
    own_location(r, rel);
  }
}

static void add_db(struct config *c, const struct db_config *e,
                   const char *rel) {
  c->dbs = xrealloc(c->dbs, (c->n_dbs + 1) * sizeof(*c->dbs));
  config_dir_make_db(e, rel, &c->dbs[c->n_dbs++]);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

struct found {
  char **rel;
  size_t n;
};

static void scan(const struct db_config *e, const char *rel_dir, int depth,
                 struct found *f) {
  char *abs = rel_dir ? path_join(e->dir, rel_dir) : xstrdup(e->dir);
  DIR *dh = opendir(abs);
  if (!dh) {
    if (rel_dir)
      log_warn(NULL, NULL, "dir %s: cannot read %s: %s", e->dir, abs,
               strerror(errno));
    free(abs);
    return;
  }
  struct dirent *de;
  while ((de = readdir(dh))) {
    const char *name = de->d_name;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
      continue;
    char *full = path_join(abs, name);
    struct stat st;
    if (stat(full, &st)) {
      free(full);
      continue;
    }
    char *rel = rel_dir ? path_join(rel_dir, name) : xstrdup(name);
    if (S_ISDIR(st.st_mode)) {
      if (e->recursive && !is_meta_dir(name) && depth < MAX_DEPTH)
        scan(e, rel, depth + 1, f);
      free(rel);
    } else if (S_ISREG(st.st_mode) && !is_side_file(name) &&
               fnmatch(e->pattern, name, 0) == 0) {
      int64_t size = 0;
      int h = read_header(full, &size);
      if (h > 0) {
        f->rel = xrealloc(f->rel, (f->n + 1) * sizeof(*f->rel));
        f->rel[f->n++] = rel;
        rel = NULL;
      } else if (h < 0 && g_scan_warnings && !e->watch) {
        log_warn(NULL, NULL, "dir %s: cannot read %s: %s", e->dir, full,
                 strerror(-h));
      } else if (h == 0 && size >= 16 && g_scan_warnings && !e->watch) {
        log_warn(NULL, NULL,
                 "dir %s: %s matches pattern %s but is not a SQLite "
                 "database: ignored",
                 e->dir, full, e->pattern);
      }
      free(rel);
    } else {
      free(rel);
    }
    free(full);
  }
  closedir(dh);
  free(abs);
}

static const struct db_config *g_sort_dbs;

static int cmp_db_path(const void *a, const void *b) {
  return strcmp(g_sort_dbs[*(const size_t *)a].path,
                g_sort_dbs[*(const size_t *)b].path);
}

int config_expand_dirs(struct config *c, char *err, size_t errlen) {
  if (c->n_dirs == 0)
    return 0;
  if (g_share)
    for (size_t i = 0; i < c->n_dirs; i++)
      set_lease_roots(&c->dirs[i]);
  for (size_t i = 0; i < c->n_dirs; i++) {
    const struct db_config *e = &c->dirs[i];
    struct stat st;
    char why[128];
    if (config_pattern_check(e->pattern, why, sizeof(why)))
      continue; /* reported by config_load */
    if (stat(e->dir, &st) || !S_ISDIR(st.st_mode)) {
      log_warn(NULL, NULL,
               "dir %s does not exist yet (pattern %s): no database from it "
               "until it does",
               e->dir, e->pattern);
      continue;
    }
    struct found f = {NULL, 0};
    scan(e, NULL, 0, &f);
    if (f.n)
      qsort(f.rel, f.n, sizeof(*f.rel), cmp_str);
    for (size_t j = 0; j < f.n; j++) {
      add_db(c, e, f.rel[j]);
      free(f.rel[j]);
    }
    free(f.rel);
  }
  /* Two entries matching one file: sorted by path, neighbours compared. */
  size_t *idx = xcalloc(c->n_dbs + 1, sizeof(*idx));
  for (size_t i = 0; i < c->n_dbs; i++)
    idx[i] = i;
  g_sort_dbs = c->dbs;
  qsort(idx, c->n_dbs, sizeof(*idx), cmp_db_path);
  int rc = 0;
  for (size_t i = 1; i < c->n_dbs && !rc; i++) {
    const struct db_config *a = &c->dbs[idx[i - 1]], *b = &c->dbs[idx[i]];
    if (strcmp(a->path, b->path))
      continue;
    int la = MIN(a->line, b->line), lb = MAX(a->line, b->line);
    snprintf(err, errlen,
             "%s:%d: dbs: database %s is matched by two entries (lines %d and "
             "%d)",
             c->path ? c->path : "config", lb, a->path, la, lb);
    rc = ERR_CONFIG;
  }
  free(idx);
  return rc;
}

/* rel of path under e's dir if e matches it (by name), else NULL. */
static const char *dir_rel(const struct db_config *e, const char *path) {
  char why[8];
  if (config_pattern_check(e->pattern, why, sizeof(why)))
    return NULL;
  size_t n = strlen(e->dir);
  while (n > 1 && e->dir[n - 1] == '/')
    n--;
  if (strncmp(path, e->dir, n) || path[n] != '/' || !path[n + 1])
    return NULL;
  const char *rel = path + n + 1;
  if (!e->recursive && strchr(rel, '/'))
    return NULL;
  for (const char *p = rel; *p;) {
    const char *s = strchr(p, '/');
    if (!s)
      break;
    char *comp = xstrndup(p, (size_t)(s - p));
    int bad = is_meta_dir(comp) || !comp[0];
    free(comp);
    if (bad)
      return NULL;
    p = s + 1;
  }
  const char *name = path_base(path);
  if (is_side_file(name) || fnmatch(e->pattern, name, 0))
    return NULL;
  return rel;
}

int config_dir_match(const struct db_config *e, const char *path) {
  return dir_rel(e, path) != NULL;
}

int config_dir_name_matches(const struct db_config *e, const char *name) {
  return !is_side_file(name) && !fnmatch(e->pattern, name, 0);
}

int config_dir_skip_subdir(const char *name) {
  return is_meta_dir(name);
}

struct db_config *config_dir_db(struct config *c, const char *path) {
  for (size_t i = 0; i < c->n_dirs; i++) {
    const struct db_config *e = &c->dirs[i];
    const char *rel = dir_rel(e, path);
    if (!rel)
      continue;
    struct stat st;
    if (!stat(path, &st) && (!S_ISREG(st.st_mode) || !has_sqlite_header(path)))
      continue; /* there, but not a database */
    add_db(c, e, rel);
    return &c->dbs[c->n_dbs - 1];
  }
  return NULL;
}
