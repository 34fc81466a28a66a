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

static int has_sqlite_header(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd < 0)
    return 0;
  char hdr[16];
  ssize_t n;
  do
    n = read(fd, hdr, sizeof(hdr));
  while (n < 0 && errno == EINTR);
  close(fd);
  return n == (ssize_t)sizeof(hdr) && !memcmp(hdr, SQLITE_HEADER, 16);
}

/* The database of entry e for the file at rel (relative to e->dir). */
static void make_db(const struct db_config *e, const char *rel,
                    struct db_config *d) {
  *d = *e;
  d->path = path_join(e->dir, rel);
  d->meta_path = meta_dir_path(d->path, NULL);
  d->dir = xstrdup(e->dir);
  d->pattern = xstrdup(e->pattern);
  d->replicas =
      e->n_replicas ? xcalloc(e->n_replicas, sizeof(*d->replicas)) : NULL;
  for (size_t i = 0; i < e->n_replicas; i++) {
    struct replica_config *r = &d->replicas[i];
    config_replica_copy(r, &e->replicas[i]);
    char *p = config_join_replica_path(r->path, rel);
    free(r->path);
    r->path = p;
    if (r->url) {
      p = join_url(r->url, rel);
      free(r->url);
      r->url = p;
    }
  }
}

static void add_db(struct config *c, const struct db_config *e,
                   const char *rel) {
  c->dbs = xrealloc(c->dbs, (c->n_dbs + 1) * sizeof(*c->dbs));
  make_db(e, rel, &c->dbs[c->n_dbs++]);
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
               fnmatch(e->pattern, name, 0) == 0 && has_sqlite_header(full)) {
      f->rel = xrealloc(f->rel, (f->n + 1) * sizeof(*f->rel));
      f->rel[f->n++] = rel;
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
  for (size_t i = 0; i < c->n_dirs; i++) {
    const struct db_config *e = &c->dirs[i];
    struct stat st;
    if (stat(e->dir, &st) || !S_ISDIR(st.st_mode)) {
      log_warn(NULL, NULL,
               "dir %s does not exist yet (pattern %s): no database from it "
               "until it does and sluice is reloaded (SIGHUP)",
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

struct db_config *config_dir_db(struct config *c, const char *path) {
  for (size_t i = 0; i < c->n_dirs; i++) {
    const struct db_config *e = &c->dirs[i];
    size_t n = strlen(e->dir);
    if (strncmp(path, e->dir, n) || path[n] != '/' || !path[n + 1])
      continue;
    const char *rel = path + n + 1;
    if (!e->recursive && strchr(rel, '/'))
      continue;
    int bad = 0;
    for (const char *p = rel; *p && !bad;) {
      const char *s = strchr(p, '/');
      if (!s)
        break;
      char *comp = xstrndup(p, (size_t)(s - p));
      bad = is_meta_dir(comp);
      free(comp);
      p = s + 1;
    }
    const char *name = path_base(path);
    if (bad || is_side_file(name) || fnmatch(e->pattern, name, 0))
      continue;
    struct stat st;
    if (!stat(path, &st) && (!S_ISREG(st.st_mode) || !has_sqlite_header(path)))
      continue; /* there, but not a database */
    add_db(c, e, rel);
    return &c->dbs[c->n_dbs - 1];
  }
  return NULL;
}
