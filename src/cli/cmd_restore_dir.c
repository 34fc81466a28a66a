/*
 * `sluice restore -config C -o OUTDIR DIR`: every database of a `dir:`
 * entry that the store holds, found by listing the store (a lost host is
 * rebuilt from nothing but the config), restored in parallel to
 * OUTDIR/<path relative to dir>; one line per database and a summary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/cmd.h"
#include "core/restore.h"
#include "loop/loop.h"

#define MAX_DEPTH 64

struct rdb {
  struct rdir *R;
  char *rel, *path, *out;
  struct db_config dc;
  struct backend **b;
  size_t nb;
  struct restore_target t;
  struct restore_opts o; /* read by restore_choose until its callback */
};

struct rdir {
  const struct db_config *e;
  const char *replica; /* -replica, or NULL */
  struct restore_opts o;
  struct rdb *items;
  size_t n, next, running, finished;
  size_t restored, skipped, failed;
  size_t parallel;
  int pumping;
  volatile int done;
};

static const char *replica_name(const struct replica_config *r) {
  return r->name ? r->name : r->type ? r->type : "";
}

/* --- finding the databases: the store, listed level by level --- */

static void add_rel(struct strset *seen, char ***rels, size_t *n,
                    const char *rel) {
  if (!strset_add(seen, rel))
    return;
  *rels = xrealloc(*rels, (*n + 1) * sizeof(**rels));
  (*rels)[(*n)++] = xstrdup(rel);
}

/* Lists prefix (relative to the replica root, "" or ending in '/'). */
static int list_level(const struct db_config *e, struct backend *b,
                      const char *prefix, int depth, struct strset *seen,
                      char ***rels, size_t *n, char *err, size_t errlen) {
  struct obj_list l = {0};
  int rc = backend_list_sync(b, prefix, 1, &l, err, errlen);
  for (size_t i = 0; !rc && i < l.n_prefixes; i++) {
    char *p = l.prefixes[i]; /* "a/b/" */
    size_t len = strlen(p);
    if (len < 2)
      continue;
    char *rel = xstrndup(p, len - 1);
    const char *name = path_base(rel);
    if (!strcmp(name, "generations") || config_dir_skip_subdir(name)) {
      free(rel);
      continue;
    }
    if (config_dir_name_matches(e, name))
      add_rel(seen, rels, n, rel);
    else if (e->recursive && depth < MAX_DEPTH)
      rc = list_level(e, b, p, depth + 1, seen, rels, n, err, errlen);
    free(rel);
  }
  obj_list_destroy(&l);
  return rc;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* --- restoring them, `parallel` at once --- */

static void pump(struct rdir *R);

static void finish(struct rdb *d, const char *what, const char *why) {
  struct rdir *R = d->R;
  if (!strcmp(what, "restored")) {
    R->restored++;
    log_info(d->path, NULL, "restored to %s (generation %s)", d->out, d->t.gen);
  } else if (!strcmp(what, "skipped")) {
    R->skipped++;
    log_info(d->path, NULL, "skipped: %s", why);
  } else {
    R->failed++;
    log_error(d->path, NULL, "restore failed: %s", why);
  }
  for (size_t i = 0; i < d->nb; i++)
    backend_close(d->b[i]);
  free(d->b);
  d->b = NULL;
  d->nb = 0;
  config_db_destroy(&d->dc);
  R->running--;
  R->finished++;
  pump(R);
}

static void on_run(void *arg, int status, const char *err) {
  struct rdb *d = arg;
  if (status)
    finish(d, "failed", err && *err ? err : err_str(status));
  else
    finish(d, "restored", NULL);
}

static void on_choose(void *arg, int status, const char *err) {
  struct rdb *d = arg;
  if (status == ERR_NO_BACKUPS) {
    finish(d, "skipped", "no backups in the store");
    return;
  }
  if (status) {
    finish(d, "failed", err && *err ? err : err_str(status));
    return;
  }
  restore_run(d->b[d->t.replica], d->t.gen, &d->o, d->out, on_run, d);
}

static void start(struct rdb *d) {
  struct rdir *R = d->R;
  R->running++;
  struct stat st;
  if (!stat(d->out, &st)) {
    finish(d, "skipped", "output path already exists");
    return;
  }
  config_dir_make_db(R->e, d->rel, &d->dc);
  char err[512];
  for (size_t i = 0; i < d->dc.n_replicas; i++) {
    const struct replica_config *rc = &d->dc.replicas[i];
    if (R->replica && strcmp(R->replica, replica_name(rc)))
      continue;
    struct backend *b = backend_open(rc, err, sizeof(err));
    if (!b) {
      finish(d, "failed", err);
      return;
    }
    d->b = xrealloc(d->b, (d->nb + 1) * sizeof(*d->b));
    d->b[d->nb++] = b;
  }
  d->o = R->o;
  d->o.db = d->path;
  restore_choose(d->b, d->nb, &d->o, &d->t, on_choose, d);
}

static void pump(struct rdir *R) {
  if (R->pumping)
    return;
  R->pumping = 1;
  while (R->running < R->parallel && R->next < R->n)
    start(&R->items[R->next++]);
  R->pumping = 0;
  if (R->finished == R->n)
    R->done = 1;
}

int cmd_restore_dir(struct config *cfg, const struct db_config *e,
                    const char *outdir, const struct restore_opts *o,
                    const char *replica, int parallel, int64_t timeout) {
  char err[1024];
  struct strset seen = {0};
  char **rels = NULL;
  size_t n = 0;
  int found_replica = 0;
  cmd_set_deadline(timeout);
  for (size_t i = 0; i < e->n_replicas; i++) {
    const struct replica_config *rc = &e->replicas[i];
    if (replica && strcmp(replica, replica_name(rc)))
      continue;
    found_replica = 1;
    struct backend *b = backend_open(rc, err, sizeof(err));
    int rc_ =
        b ? list_level(e, b, "", 0, &seen, &rels, &n, err, sizeof(err)) : 1;
    if (b)
      backend_close(b);
    if (rc_) {
      cmd_set_deadline(0);
      strset_destroy(&seen);
      for (size_t k = 0; k < n; k++)
        free(rels[k]);
      free(rels);
      return cmd_fail("cannot list replica %s of dir %s: %s", replica_name(rc),
                      e->dir, err);
    }
  }
  cmd_set_deadline(0);
  strset_destroy(&seen);
  (void)cfg;
  if (replica && !found_replica)
    return cmd_fail("replica \"%s\" not found for dir \"%s\"", replica, e->dir);
  if (n)
    qsort(rels, n, sizeof(*rels), cmp_str);
  log_info(NULL, NULL, "dir %s: %zu databases in the store, restoring to %s",
           e->dir, n, outdir);
  struct rdir R = {0};
  R.e = e;
  R.replica = replica;
  R.o = *o;
  R.parallel = parallel < 1 ? 1 : (size_t)parallel;
  R.n = n;
  R.items = xcalloc(n + 1, sizeof(*R.items));
  for (size_t i = 0; i < n; i++) {
    struct rdb *d = &R.items[i];
    d->R = &R;
    d->rel = rels[i];
    d->path = path_join(e->dir, rels[i]);
    d->out = path_join(outdir, rels[i]);
  }
  free(rels);
  pump(&R);
  if (!R.done)
    loop_run_until(&R.done);
  log_info(NULL, NULL,
           "restore of dir %s: restored %zu, skipped %zu, failed %zu", e->dir,
           R.restored, R.skipped, R.failed);
  for (size_t i = 0; i < n; i++) {
    free(R.items[i].rel);
    free(R.items[i].path);
    free(R.items[i].out);
  }
  free(R.items);
  return R.failed ? 1 : 0;
}
