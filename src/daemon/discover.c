/*
 * Live discovery of databases under `dir:` entries (see discover.h).
 *
 * One node per directory: its inotify subscriber (or its poll timer), and
 * the sorted names its last scan found, which the next scan (on the pool)
 * diffs against so the loop only handles what changed.  An event names one
 * entry: it is probed on the pool (stat and the first 16 bytes), so a file
 * created empty and filled later is found by the write that gives it the
 * SQLite header.  Probes of one path are coalesced.
 */
#include "daemon/discover.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>

#include "base/log.h"
#include "base/smap.h"
#include "base/util.h"
#include "loop/loop.h"

#define MAX_DEPTH 64
#define DEFAULT_POLL_MS 1000

struct dnode {
  struct discover *ds;
  const struct db_config *e;
  char *rel; /* relative to e->dir; "" for the root */
  char *abs;
  int depth;
  int live; /* watch: rescans, events, polls; else one scan */
  struct loop_dirwatch *w;
  struct loop_timer *poll;
  int scanning, rescan, dead;
  char **names; /* databases found by the last scan, sorted */
  size_t n_names;
  char **dirs; /* subdirectories found by the last scan, sorted */
  size_t n_dirs;
};

struct waiter {
  struct discover *ds;
  const struct db_config *e;
  struct loop_timer *t;
};

/* A file probed again later (SQLite, not yet in WAL mode). */
struct reprobe {
  struct discover *ds;
  const struct db_config *e;
  char *dir, *path;
  struct loop_timer *t;
  struct reprobe *prev, *next;
};

struct discover {
  struct reprobe *reprobes;
  struct probe_job *pq_head, *pq_tail; /* probes, oldest first */
  const struct config *cfg;
  struct smap nodes;  /* abs -> dnode */
  struct smap probes; /* abs path -> (void *)1 in flight, 2 probe again */
  struct smap warned; /* abs path -> (void *)1: a warning was logged */
  struct waiter *waiters;
  size_t n_waiters;
  int refs; /* jobs in flight + 1 while running */
  int stopped;
  int limit_warned, n_polled;
  /* The watch limit was reached: one warning with the numbers, once the
   * scans going on have found what they will (LIMIT_REPORT_MS later). */
  struct loop_timer *limit_timer;
  const struct db_config *limit_e;
};

#define LIMIT_REPORT_MS 1000

static void ds_unref(struct discover *ds) {
  if (--ds->refs > 0)
    return;
  smap_destroy(&ds->nodes);
  smap_destroy(&ds->probes);
  smap_destroy(&ds->warned);
  free(ds->waiters);
  free(ds);
}

static int64_t poll_ms(const struct db_config *e) {
  int64_t ms = e->monitor_interval / 1000000;
  return ms > 0 ? ms : DEFAULT_POLL_MS;
}

static void free_list(char **v, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(v[i]);
  free(v);
}

static void warn_once(struct discover *ds, const char *path, const char *fmt,
                      ...) __attribute__((format(printf, 3, 4)));
static void warn_once(struct discover *ds, const char *path, const char *fmt,
                      ...) {
  if (smap_get(&ds->warned, path))
    return;
  smap_put(&ds->warned, path, (void *)1);
  va_list ap;
  va_start(ap, fmt);
  char *msg = xvasprintf(fmt, ap);
  va_end(ap);
  log_warn(NULL, NULL, "%s", msg);
  free(msg);
}

static void node_scan(struct dnode *n);
static void probe_later(struct discover *ds, const struct db_config *e,
                        const char *dir, const char *path);
static void node_free(struct dnode *n);
static void add_node(struct discover *ds, const struct db_config *e,
                     const char *rel, int depth);
static void wait_for(struct discover *ds, const struct db_config *e);

/* --- scanning one directory (pool) --- */

struct scan_job {
  struct dnode *n;
  /* in (owned by the job while it runs) */
  char *abs;
  char *pattern_dir;
  const struct db_config *e;
  char **old_names, **old_dirs;
  size_t n_old_names, n_old_dirs;
  /* out */
  int err; /* errno of opendir */
  char **names, **dirs, **notdb, **unreadable, **settling;
  size_t n_names, n_dirs, n_notdb, n_unreadable, n_settling;
};

static void push(char ***v, size_t *n, const char *s) {
  *v = xrealloc(*v, (*n + 1) * sizeof(**v));
  (*v)[(*n)++] = xstrdup(s);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static int stat_is_dir(const char *path) {
  struct stat st;
  if (stat(path, &st))
    return errno == ENOENT ? CONFIG_PROBE_GONE : CONFIG_PROBE_UNREADABLE;
  return S_ISDIR(st.st_mode) ? CONFIG_PROBE_DIR : CONFIG_PROBE_OTHER;
}

static void scan_work(void *arg) {
  struct scan_job *j = arg;
  DIR *dh = opendir(j->abs);
  if (!dh) {
    j->err = errno;
    return;
  }
  struct dirent *de;
  while ((de = readdir(dh))) {
    const char *name = de->d_name;
    if (!strcmp(name, ".") || !strcmp(name, ".."))
      continue;
    int want_dir = j->e->recursive && !config_dir_skip_subdir(name);
    int want_file = config_dir_name_matches(j->e, name);
    if (!want_dir && !want_file)
      continue;
    if (de->d_type != DT_UNKNOWN && de->d_type != DT_DIR &&
        de->d_type != DT_REG && de->d_type != DT_LNK)
      continue;
    if ((de->d_type == DT_DIR && !want_dir) ||
        (de->d_type == DT_REG && !want_file))
      continue;
    char *full = path_join(j->abs, name);
    /* Never open a file that is not a candidate (a -shm: closing it would
     * drop the locks SQLite holds on it in this process). */
    int k = want_file ? config_dir_probe(full) : stat_is_dir(full);
    if (k == CONFIG_PROBE_DIR && want_dir)
      push(&j->dirs, &j->n_dirs, name);
    else if (k == CONFIG_PROBE_DB && want_file)
      push(&j->names, &j->n_names, name);
    else if (k == CONFIG_PROBE_NOTDB && want_file)
      push(&j->notdb, &j->n_notdb, name);
    else if (k == CONFIG_PROBE_SETTLING && want_file)
      push(&j->settling, &j->n_settling, name);
    else if (k == CONFIG_PROBE_UNREADABLE && want_file)
      push(&j->unreadable, &j->n_unreadable, name);
    free(full);
  }
  closedir(dh);
  if (j->n_names)
    qsort(j->names, j->n_names, sizeof(char *), cmp_str);
  if (j->n_dirs)
    qsort(j->dirs, j->n_dirs, sizeof(char *), cmp_str);
}

/* Calls fn for names in a but not in b (both sorted). */
static void diff(char **a, size_t na, char **b, size_t nb,
                 void (*fn)(struct dnode *, const char *), struct dnode *n) {
  size_t i = 0, k = 0;
  while (i < na) {
    int c = k < nb ? strcmp(a[i], b[k]) : -1;
    if (c < 0)
      fn(n, a[i++]);
    else if (c > 0)
      k++;
    else
      i++, k++;
  }
}

static char *child_rel(const struct dnode *n, const char *name) {
  return n->rel[0] ? path_join(n->rel, name) : xstrdup(name);
}

static void found_db(struct dnode *n, const char *name) {
  char *rel = child_rel(n, name);
  daemon_discovered(n->e, rel);
  free(rel);
}

static void lost_db(struct dnode *n, const char *name) {
  char *p = path_join(n->abs, name);
  daemon_vanished(p);
  smap_del(&n->ds->warned, p);
  free(p);
}

static void found_dir(struct dnode *n, const char *name) {
  char *rel = child_rel(n, name);
  add_node(n->ds, n->e, rel, n->depth + 1);
  free(rel);
}

/* Removes node abs and every node below it, and their databases. */
static void remove_tree(struct discover *ds, const char *abs) {
  size_t len = strlen(abs);
  const char *k;
  void *v;
  for (size_t i = 0; (i = smap_next(&ds->nodes, i, &k, &v));) {
    if (strncmp(k, abs, len) || (k[len] && k[len] != '/'))
      continue;
    struct dnode *n = v;
    smap_del(&ds->nodes, n->abs);
    node_free(n);
  }
  daemon_vanished_under(abs);
}

static void lost_dir(struct dnode *n, const char *name) {
  char *p = path_join(n->abs, name);
  remove_tree(n->ds, p);
  free(p);
}

static void on_poll(void *arg) {
  struct dnode *n = arg;
  node_scan(n);
}

static void scan_done(void *arg, int status) {
  (void)status;
  struct scan_job *j = arg;
  struct dnode *n = j->n;
  struct discover *ds = n->ds;
  n->scanning = 0;
  if (n->dead || ds->stopped) {
    if (n->dead) {
      free_list(n->names, n->n_names);
      free_list(n->dirs, n->n_dirs);
      free(n->rel);
      free(n->abs);
      free(n);
    }
    free_list(j->old_names, j->n_old_names);
    free_list(j->old_dirs, j->n_old_dirs);
    goto out;
  }
  if (j->err) {
    free_list(j->old_names, j->n_old_names);
    free_list(j->old_dirs, j->n_old_dirs);
    if (j->err == ENOENT || j->err == ENOTDIR) {
      const struct db_config *e = n->e;
      int root = !n->rel[0];
      char *abs = xstrdup(n->abs);
      remove_tree(ds, abs); /* frees n */
      if (root) {
        log_warn(NULL, NULL, "dir %s was removed: waiting for it again",
                 e->dir);
        wait_for(ds, e);
      }
      free(abs);
      goto out;
    }
    warn_once(ds, n->abs, "dir %s: cannot read %s: %s", n->e->dir, n->abs,
              strerror(j->err));
    n->names = n->dirs = NULL;
    n->n_names = n->n_dirs = 0;
    goto again;
  }
  /* What is new, then what went away. */
  diff(j->names, j->n_names, j->old_names, j->n_old_names, found_db, n);
  diff(j->old_names, j->n_old_names, j->names, j->n_names, lost_db, n);
  diff(j->dirs, j->n_dirs, j->old_dirs, j->n_old_dirs, found_dir, n);
  diff(j->old_dirs, j->n_old_dirs, j->dirs, j->n_dirs, lost_dir, n);
  smap_del(&ds->warned, n->abs);
  for (size_t i = 0; i < j->n_notdb; i++) {
    char *p = path_join(n->abs, j->notdb[i]);
    warn_once(ds, p,
              "dir %s: %s matches pattern %s but is not a SQLite database: "
              "ignored",
              n->e->dir, p, n->e->pattern);
    free(p);
  }
  for (size_t i = 0; i < j->n_settling; i++) {
    char *p = path_join(n->abs, j->settling[i]);
    probe_later(ds, n->e, n->abs, p);
    free(p);
  }
  for (size_t i = 0; i < j->n_unreadable; i++) {
    char *p = path_join(n->abs, j->unreadable[i]);
    warn_once(ds, p, "dir %s: cannot read %s: permission denied or I/O error",
              n->e->dir, p);
    free(p);
  }
  free_list(j->old_names, j->n_old_names);
  free_list(j->old_dirs, j->n_old_dirs);
  n->names = j->names;
  n->n_names = j->n_names;
  n->dirs = j->dirs;
  n->n_dirs = j->n_dirs;
  j->names = j->dirs = NULL;
  j->n_names = j->n_dirs = 0;
again:
  if (n->rescan) {
    n->rescan = 0;
    node_scan(n);
  } else if (n->poll) {
    loop_timer_start(n->poll, (uint64_t)poll_ms(n->e));
  }
out:
  free_list(j->names, j->n_names);
  free_list(j->dirs, j->n_dirs);
  free_list(j->notdb, j->n_notdb);
  free_list(j->unreadable, j->n_unreadable);
  free_list(j->settling, j->n_settling);
  free(j->abs);
  free(j);
  ds_unref(ds);
}

static void node_scan(struct dnode *n) {
  if (n->scanning) {
    n->rescan = 1;
    return;
  }
  struct scan_job *j = xcalloc(1, sizeof(*j));
  j->n = n;
  j->e = n->e;
  j->abs = xstrdup(n->abs);
  /* The last scan moves to the job (the loop keeps none meanwhile). */
  j->old_names = n->names;
  j->n_old_names = n->n_names;
  j->old_dirs = n->dirs;
  j->n_old_dirs = n->n_dirs;
  n->names = n->dirs = NULL;
  n->n_names = n->n_dirs = 0;
  n->scanning = 1;
  n->ds->refs++;
  loop_work_submit(scan_work, scan_done, j);
}

/* --- one entry changed (an event) --- */

struct probe_job {
  struct discover *ds;
  const struct db_config *e;
  char *path, *dir;
  int kind, dir_gone;
  int done;
  struct probe_job *next; /* applied in the order of the events */
};

static void probe_work(void *arg) {
  struct probe_job *j = arg;
  j->kind = config_dir_name_matches(j->e, path_base(j->path))
                ? config_dir_probe(j->path)
                : stat_is_dir(j->path);
  struct stat st;
  j->dir_gone = stat(j->dir, &st) != 0 && errno == ENOENT;
}

static void probe(struct discover *ds, const struct db_config *e,
                  const char *dir, const char *path);

/* Results are applied in the order of the events that asked for them, so
 * that a rename's "old name gone" stops the old instance before the new
 * name starts one (they run on the pool in any order). */
static void apply_probe(struct probe_job *j);

static void probe_done(void *arg, int status) {
  (void)status;
  struct probe_job *j = arg;
  struct discover *ds = j->ds;
  j->done = 1;
  ds->refs++;
  while (ds->pq_head && ds->pq_head->done) {
    struct probe_job *h = ds->pq_head;
    ds->pq_head = h->next;
    if (!ds->pq_head)
      ds->pq_tail = NULL;
    apply_probe(h);
  }
  ds_unref(ds);
}

static void apply_probe(struct probe_job *j) {
  struct discover *ds = j->ds;
  if (ds->stopped)
    goto out;
  int again = smap_del(&ds->probes, j->path) == (void *)2;
  struct dnode *n = smap_get(&ds->nodes, j->dir);
  if (!n)
    goto out; /* its directory went away meanwhile */
  if (j->dir_gone) {
    node_scan(n); /* reports the directory gone */
    goto out;
  }
  const char *name = path_base(j->path);
  int file = config_dir_name_matches(j->e, name);
  char *rel = child_rel(n, name);
  switch (j->kind) {
  case CONFIG_PROBE_DB:
    if (file)
      daemon_discovered(j->e, rel);
    break;
  case CONFIG_PROBE_SHORT:
    break; /* its next write probes it again */
  case CONFIG_PROBE_SETTLING:
    if (file)
      probe_later(ds, j->e, j->dir, j->path);
    break;
  case CONFIG_PROBE_NOTDB:
    if (file) {
      daemon_vanished(j->path); /* replaced by something else */
      warn_once(ds, j->path,
                "dir %s: %s matches pattern %s but is not a SQLite database: "
                "ignored",
                j->e->dir, j->path, j->e->pattern);
    }
    break;
  case CONFIG_PROBE_DIR:
    if (j->e->recursive && !config_dir_skip_subdir(name) &&
        !smap_get(&ds->nodes, j->path))
      add_node(ds, j->e, rel, n->depth + 1);
    break;
  case CONFIG_PROBE_UNREADABLE:
    if (file)
      warn_once(ds, j->path, "dir %s: cannot read %s: permission denied",
                j->e->dir, j->path);
    break;
  default: /* gone, or not a file */
    if (file)
      daemon_vanished(j->path);
    smap_del(&ds->warned, j->path);
    if (smap_get(&ds->nodes, j->path))
      remove_tree(ds, j->path);
    break;
  }
  free(rel);
  if (again)
    probe(ds, j->e, j->dir, j->path);
out:
  free(j->path);
  free(j->dir);
  free(j);
  ds_unref(ds);
}

static void probe(struct discover *ds, const struct db_config *e,
                  const char *dir, const char *path) {
  void *st = smap_get(&ds->probes, path);
  if (st) {
    smap_put(&ds->probes, path, (void *)2);
    return;
  }
  smap_put(&ds->probes, path, (void *)1);
  struct probe_job *j = xcalloc(1, sizeof(*j));
  j->ds = ds;
  j->e = e;
  j->path = xstrdup(path);
  j->dir = xstrdup(dir);
  if (ds->pq_tail)
    ds->pq_tail->next = j;
  else
    ds->pq_head = j;
  ds->pq_tail = j;
  ds->refs++;
  loop_work_submit(probe_work, probe_done, j);
}

static void reprobe_free(struct reprobe *r) {
  if (r->prev)
    r->prev->next = r->next;
  else
    r->ds->reprobes = r->next;
  if (r->next)
    r->next->prev = r->prev;
  loop_timer_free(r->t);
  free(r->dir);
  free(r->path);
  free(r);
}

static void on_reprobe(void *arg) {
  struct reprobe *r = arg;
  struct discover *ds = r->ds;
  if (smap_get(&ds->nodes, r->dir))
    probe(ds, r->e, r->dir, r->path);
  reprobe_free(r);
}

static void probe_later(struct discover *ds, const struct db_config *e,
                        const char *dir, const char *path) {
  for (struct reprobe *r = ds->reprobes; r; r = r->next)
    if (!strcmp(r->path, path))
      return;
  struct reprobe *r = xcalloc(1, sizeof(*r));
  r->ds = ds;
  r->e = e;
  r->dir = xstrdup(dir);
  r->path = xstrdup(path);
  r->t = loop_timer_new(on_reprobe, r);
  r->next = ds->reprobes;
  if (r->next)
    r->next->prev = r;
  ds->reprobes = r;
  loop_timer_start(r->t, CONFIG_PROBE_SETTLE_MS / 4);
}

static void on_event(void *arg, const char *name, int events) {
  struct dnode *n = arg;
  if (n->ds->stopped || n->dead)
    return;
  if (!name) { /* events were lost (queue overflow): scan again */
    node_scan(n);
    return;
  }
  const struct db_config *e = n->e;
  int file = config_dir_name_matches(e, name);
  int dir = e->recursive && !config_dir_skip_subdir(name);
  if (!file && !(dir && (events & LOOP_DIR_RENAME)))
    return;
  char *path = path_join(n->abs, name);
  /* A running database being written: nothing to find. */
  if (events == LOOP_DIR_CHANGE && daemon_is_running(path)) {
    free(path);
    return;
  }
  probe(n->ds, e, n->abs, path);
  free(path);
}

/* --- nodes --- */

static void node_free(struct dnode *n) {
  loop_dirwatch_free(n->w);
  loop_timer_free(n->poll);
  n->w = NULL;
  n->poll = NULL;
  if (n->scanning) {
    n->dead = 1; /* scan_done frees it */
    return;
  }
  free_list(n->names, n->n_names);
  free_list(n->dirs, n->n_dirs);
  free(n->rel);
  free(n->abs);
  free(n);
}

/* The one warning about the inotify watch limit, with the numbers: the
 * limit, the directories found under watched entries, how many of them
 * are watched and how many polled instead. */
static void on_limit_report(void *arg) {
  struct discover *ds = arg;
  size_t live = 0, polled = 0;
  const char *k;
  void *v;
  for (size_t i = 0; (i = smap_next(&ds->nodes, i, &k, &v));) {
    const struct dnode *n = v;
    live += n->live;
    polled += n->live && !n->w;
  }
  long max = loop_inotify_max_watches();
  log_warn(NULL, NULL,
           "the inotify watch limit (fs.inotify.max_user_watches = %ld) is "
           "reached: %zu directories found under watched dirs, %zu watched, "
           "%zu polling every %lld ms instead (first: under %s); watches of "
           "this user's other processes count too; raise the limit to at "
           "least %ld to watch them all",
           max, live, live - polled, polled, (long long)poll_ms(ds->limit_e),
           ds->limit_e->dir, max + (long)polled);
}

static void add_node(struct discover *ds, const struct db_config *e,
                     const char *rel, int depth) {
  char *abs = rel[0] ? path_join(e->dir, rel) : xstrdup(e->dir);
  if (smap_get(&ds->nodes, abs) || depth > MAX_DEPTH) {
    free(abs);
    return;
  }
  struct dnode *n = xcalloc(1, sizeof(*n));
  n->ds = ds;
  n->e = e;
  n->rel = xstrdup(rel);
  n->abs = abs;
  n->depth = depth;
  n->live = e->watch;
  smap_put(&ds->nodes, abs, n);
  if (n->live) {
    /* Watch first, then scan: nothing created in between is missed. */
    int rc = loop_dirwatch_new(abs, on_event, n, &n->w);
    if (rc) {
      n->w = NULL;
      n->poll = loop_timer_new(on_poll, n);
      ds->n_polled++;
      if (rc == -ENOSPC && !ds->limit_warned) {
        ds->limit_warned = 1;
        ds->limit_e = e;
        ds->limit_timer = loop_timer_new(on_limit_report, ds);
        loop_timer_start(ds->limit_timer, LIMIT_REPORT_MS);
      } else if (rc != -ENOSPC) {
        warn_once(ds, abs,
                  "dir %s: cannot watch %s: %s; polling it every %lld ms",
                  e->dir, abs, strerror(-rc), (long long)poll_ms(e));
      }
    }
  }
  node_scan(n);
}

/* --- a dir that does not exist yet --- */

static void on_wait(void *arg) {
  struct waiter *w = arg;
  struct stat st;
  if (stat(w->e->dir, &st) || !S_ISDIR(st.st_mode)) {
    loop_timer_start(w->t, (uint64_t)poll_ms(w->e));
    return;
  }
  log_info(NULL, NULL, "dir %s exists now: %s it", w->e->dir,
           w->e->watch ? "watching" : "scanning");
  loop_timer_free(w->t);
  w->t = NULL;
  add_node(w->ds, w->e, "", 0);
}

static void wait_for(struct discover *ds, const struct db_config *e) {
  struct waiter *w = NULL;
  for (size_t i = 0; i < ds->n_waiters; i++)
    if (ds->waiters[i].e == e)
      w = &ds->waiters[i];
  if (!w || w->t)
    return;
  w->t = loop_timer_new(on_wait, w);
  loop_timer_start(w->t, (uint64_t)poll_ms(e));
}

struct discover *discover_start(const struct config *c) {
  struct discover *ds = xcalloc(1, sizeof(*ds));
  ds->cfg = c;
  ds->refs = 1;
  ds->waiters = xcalloc(c->n_dirs + 1, sizeof(*ds->waiters));
  ds->n_waiters = c->n_dirs;
  for (size_t i = 0; i < c->n_dirs; i++) {
    const struct db_config *e = &c->dirs[i];
    struct waiter *w = &ds->waiters[i];
    w->ds = ds;
    w->e = e;
    char why[128];
    if (config_pattern_check(e->pattern, why, sizeof(why)))
      continue; /* config_load said so */
    struct stat st;
    if (stat(e->dir, &st) || !S_ISDIR(st.st_mode)) {
      /* config_expand_dirs said so (one line); now wait for it. */
      w->t = loop_timer_new(on_wait, w);
      loop_timer_start(w->t, (uint64_t)poll_ms(e));
    } else if (e->watch) {
      add_node(ds, e, "", 0); /* found at start: now watched */
    }
  }
  return ds;
}

void discover_stop(struct discover *ds) {
  if (!ds)
    return;
  ds->stopped = 1;
  loop_timer_free(ds->limit_timer);
  ds->limit_timer = NULL;
  for (size_t i = 0; i < ds->n_waiters; i++)
    loop_timer_free(ds->waiters[i].t);
  while (ds->reprobes)
    reprobe_free(ds->reprobes);
  const char *k;
  void *v;
  for (size_t i = 0; (i = smap_next(&ds->nodes, i, &k, &v));)
    node_free(v);
  ds_unref(ds);
}
