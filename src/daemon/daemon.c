/*
 * The running daemon: one loop drives every database and replica; the
 * metrics server, systemd readiness and watchdog, SIGHUP reloads, the -exec
 * child; SIGINT/SIGTERM (or the child exiting) trigger a final sync of
 * everything, bounded by shutdown-timeout.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/log.h"
#include "base/slab.h"
#include "base/smap.h"
#include "base/util.h"
#include "config/url.h"
#include "core/budget.h"
#include "core/db.h"
#include "core/engine.h"
#include "core/lease.h"
#include "core/replica.h"
#include "daemon/discover.h"
#include "daemon/metrics.h"
#include "daemon/status.h"
#include "daemon/sdnotify.h"
#include "loop/http.h"
#include "loop/httpd.h"
#include "loop/loop.h"

struct daemon {
  struct config cfg;        /* the current configuration */
  struct config **old_cfgs; /* replaced by reloads; databases that were
                               closed may still point into them */
  size_t n_old_cfgs;
  char *config_path; /* NULL in command-line mode */
  int expand_env;
  int verbose;
  struct loop_signal *sig_hup;
  struct db **closing; /* closed by a reload, not yet done */
  size_t n_closing;
  struct db **dbs;
  size_t n_dbs;
  struct loop_signal *sig_int, *sig_term;
  struct loop_child *child;
  int child_exited;
  int child_code;
  int shutting_down;
  int open_dbs;
  int exit_code;
  struct loop_timer *shutdown_timer;
  struct loop_timer *ready_timer;
  struct loop_timer *watchdog_timer;
  uint64_t watchdog_ms;
  struct httpd *httpd;
  volatile int done;
  struct smap by_path;        /* db name -> running db (g_d.dbs) */
  struct discover *disc;      /* live discovery of dir entries */
  struct smap conflicts;      /* paths matched by two entries, logged */
  struct db_config **retired; /* discovered configs replaced by a reload */
  size_t n_retired;
  int reloading, reload_again;
  /* Databases deleted or renamed, still closing, per dir entry (its dir):
   * a database found under that dir meanwhile waits (a renamed file is the
   * same inode: two instances must never hold it at once). */
  struct smap vanishing;     /* entry dir -> (intptr) count */
  struct smap vanishing_dbs; /* "%p" of the db -> its entry dir (owned) */
  struct deferred *deferred;
  /* Dormant databases (idle stubs of dir entries, closed): path ->
   * struct dormant.  Each costs its path, this record and a watch. */
  struct smap dormant;
  size_t n_dormant, n_dormant_replicas;
  char **rest_q; /* paths of new idle stubs, to consider (on_rest) */
  size_t n_rest_q;
  struct loop_timer *rest_timer;
  struct loop_timer *trim_timer; /* gives back what dormancy freed */
  int trimming;
};

struct deferred {
  const struct db_config *e;
  char *rel;
  struct deferred *next;
};

static struct daemon g_d;

/* A dormant database (see "dormancy" below). */
struct dormant {
  struct status_dormant s; /* path, generation, entry (status, metrics) */
  struct watch_sub *watch;
  struct lease **leases; /* parked: one per replica under the entry's lease */
  size_t n_leases;
  struct db *db;     /* its instance, while it closes */
  int woken;         /* its files changed while it closed */
  int dropped;       /* deleted, or a reload, while it closed */
  int releases_left; /* lease releases still to end (dormant_drop) */
  int counted;       /* in shutdown_all's count of what is open */
  uint64_t files;    /* its files as it went dormant (files_state) */
  size_t size;       /* of the slab object: record, path, leases */
  char path[];
};
static void dormant_drop(struct dormant *d);
static void dormant_stop(struct dormant *d);
static void dormant_unlist(struct dormant *d);
static char **dormant_paths(size_t *n);

/* Databases waiting for their old instance to close (reload). */
struct pending_start {
  struct db *db;
  struct pending_start *next;
};
static struct pending_start *g_pending;

/* A discovered database's config is its own heap object (not in any
 * config's dbs array): freed with the database. */
static int cfg_owned(const struct db_config *c) {
  if (c >= g_d.cfg.dbs && c < g_d.cfg.dbs + g_d.cfg.n_dbs)
    return 0;
  for (size_t i = 0; i < g_d.n_old_cfgs; i++) {
    const struct config *o = g_d.old_cfgs[i];
    if (c >= o->dbs && c < o->dbs + o->n_dbs)
      return 0;
  }
  return 1;
}

/* Paths of every database instance of this process (running, closing,
 * waiting to start), for the scans' header reads (config_probe_guard):
 * counted, since a restarted database has two instances for a while. */
static pthread_mutex_t g_inuse_mu = PTHREAD_MUTEX_INITIALIZER;
static struct smap g_inuse;

static int guard_begin(void *arg, const char *path) {
  (void)arg;
  /* A database's -wal, -shm and -journal are its too. */
  static const char *const side[] = {"-wal", "-shm", "-journal"};
  char *base = NULL;
  for (size_t i = 0; i < ARRAY_SIZE(side) && !base; i++)
    if (str_has_suffix(path, side[i]))
      base = xstrndup(path, strlen(path) - strlen(side[i]));
  pthread_mutex_lock(&g_inuse_mu);
  int in_use = smap_get(&g_inuse, path) || (base && smap_get(&g_inuse, base));
  free(base);
  if (in_use) {
    pthread_mutex_unlock(&g_inuse_mu);
    return 1;
  }
  return 0; /* held until guard_end: no instance opens it meanwhile */
}

static void guard_end(void *arg) {
  (void)arg;
  pthread_mutex_unlock(&g_inuse_mu);
}

static const struct config_probe_guard g_guard = {guard_begin, guard_end, NULL};

static struct db *new_db(struct db_config *c) {
  pthread_mutex_lock(&g_inuse_mu);
  intptr_t n = (intptr_t)smap_get(&g_inuse, c->path);
  smap_put(&g_inuse, c->path, (void *)(n + 1));
  pthread_mutex_unlock(&g_inuse_mu);
  return db_new(c);
}

static void free_db_and_cfg(struct db *db) {
  struct db_config *c = db->cfg;
  char *path = xstrdup(db->name);
  db_free(db);
  pthread_mutex_lock(&g_inuse_mu);
  intptr_t n = (intptr_t)smap_get(&g_inuse, path);
  if (n > 1)
    smap_put(&g_inuse, path, (void *)(n - 1));
  else
    smap_del(&g_inuse, path);
  pthread_mutex_unlock(&g_inuse_mu);
  free(path);
  if (cfg_owned(c)) {
    config_db_destroy(c);
    free(c);
  }
}

/* Shell-like word splitting without expansion (go-shellwords): quotes and
 * backslash escapes.  Returns a NULL-terminated owned argv or NULL. */
static char **split_words(const char *s) {
  char **argv = NULL;
  size_t n = 0;
  struct buf w;
  buf_init(&w, 0);
  int in_word = 0;
  for (const char *p = s;; p++) {
    char c = *p;
    if (c == '\0' || ((c == ' ' || c == '\t' || c == '\n') && 1)) {
      if (in_word) {
        argv = xrealloc(argv, (n + 2) * sizeof(char *));
        argv[n++] = xstrndup(w.len ? (char *)w.data : "", w.len);
        buf_reset(&w);
        in_word = 0;
      }
      if (c == '\0')
        break;
      continue;
    }
    in_word = 1;
    if (c == '\\' && p[1]) {
      buf_append(&w, ++p, 1);
    } else if (c == '\'') {
      const char *end = strchr(p + 1, '\'');
      if (!end)
        goto bad;
      buf_append(&w, p + 1, (size_t)(end - p - 1));
      p = end;
    } else if (c == '"') {
      for (p++; *p && *p != '"'; p++) {
        if (*p == '\\' && (p[1] == '"' || p[1] == '\\' || p[1] == '$'))
          p++;
        buf_append(&w, p, 1);
      }
      if (!*p)
        goto bad;
    } else {
      buf_append(&w, p, 1);
    }
  }
  buf_destroy(&w);
  if (!n)
    return NULL;
  argv[n] = NULL;
  return argv;
bad:
  buf_destroy(&w);
  for (size_t i = 0; i < n; i++)
    free(argv[i]);
  free(argv);
  return NULL;
}

static void finish(void) {
  g_d.done = 1;
  loop_stop();
}

static void on_db_closed(void *arg) {
  (void)arg;
  if (--g_d.open_dbs > 0)
    return;
  log_info(NULL, NULL, "sluice shut down");
  finish();
}

static void on_shutdown_timeout(void *arg) {
  (void)arg;
  log_error(NULL, NULL,
            "shutdown timeout reached: exiting with changes not uploaded");
  for (size_t i = 0; i < g_d.n_dbs; i++) {
    struct db *db = g_d.dbs[i];
    for (size_t j = 0; j < db->n_replicas; j++) {
      struct replica *r = db->replicas[j];
      char p[48];
      pos_format(&r->pos, p);
      if (r->state != R_IDLE || r->pending_since_ns)
        log_error(db->name, r->name, "not uploaded past position %s",
                  p[0] ? p : "(none)");
    }
  }
  if (!g_d.exit_code)
    g_d.exit_code = 1;
  /* Nothing new starts: the exit waits only for the jobs in flight (it
   * ran the whole stop to its end before, several seconds past a 1 ms
   * timeout at 400 databases). */
  for (size_t i = 0; i < g_d.n_dbs; i++)
    db_abandon(g_d.dbs[i]);
  for (size_t i = 0; i < g_d.n_closing; i++)
    db_abandon(g_d.closing[i]);
  const char *key;
  void *val;
  for (size_t i = 0; (i = smap_next(&g_d.dormant, i, &key, &val));)
    if (((struct dormant *)val)->db)
      db_abandon(((struct dormant *)val)->db);
  finish();
}

static int serve(void *arg, const char *path, struct buf *body,
                 const char **ctype) {
  (void)arg;
  if (!strcmp(path, "/metrics")) {
    *ctype = "text/plain; version=0.0.4; charset=utf-8";
    struct metrics_dormant md = {g_d.n_dormant, g_d.n_dormant_replicas};
    metrics_render(g_d.dbs, g_d.n_dbs, &md,
                   (int64_t)(g_d.n_dbs + g_d.n_dormant) <=
                       g_d.cfg.metrics_per_database_max,
                   body);
    return 200;
  }
  if (!strcmp(path, "/status") || !strcmp(path, "/status.json")) {
    int json = path[7] == '.';
    *ctype = json ? "application/json" : "text/plain; charset=utf-8";
    const struct status_dormant **dv = xcalloc(g_d.n_dormant + 1, sizeof(*dv));
    size_t k = 0;
    const char *key;
    void *val;
    for (size_t i = 0; (i = smap_next(&g_d.dormant, i, &key, &val));)
      if (k < g_d.n_dormant)
        dv[k++] = &((struct dormant *)val)->s;
    status_render(g_d.dbs, g_d.n_dbs, dv, k, json, body);
    free(dv);
    return 200;
  }
  if (!strcmp(path, "/healthz"))
    return metrics_health(g_d.dbs, g_d.n_dbs, g_d.cfg.health_max_sync_age,
                          body);
  buf_appendf(body, "404 page not found\n");
  return 404;
}

/* READY=1 once every database's start is decided: asleep because its
 * local state proves it caught up, or opened (or found missing), or
 * queued for a hot slot to open (db_start_decided).  A start is decided
 * once and for good, so the scan resumes where it stopped. */
static void on_ready_check(void *arg) {
  static size_t from;
  (void)arg;
  for (int pass = 0; pass < 2; pass++, from = 0) {
    for (; from < g_d.n_dbs; from++) {
      if (!db_start_decided(g_d.dbs[from])) {
        loop_timer_start(g_d.ready_timer, 20);
        return;
      }
    }
    /* (Once more from the start: a database removed meanwhile may have
     * moved another one behind the cursor.) */
  }
  sd_notify_msg("READY=1\nSTATUS=replicating");
}

static void on_watchdog(void *arg) {
  (void)arg;
  sd_notify_msg("WATCHDOG=1");
  loop_timer_start(g_d.watchdog_timer, g_d.watchdog_ms);
}

static void shutdown_all(void) {
  if (g_d.shutting_down)
    return;
  g_d.shutting_down = 1;
  discover_stop(g_d.disc);
  g_d.disc = NULL;
  sd_notify_msg("STOPPING=1");
  httpd_stop(g_d.httpd);
  g_d.httpd = NULL;
  int64_t t = g_d.cfg.shutdown_timeout > 0 ? g_d.cfg.shutdown_timeout
                                           : DEFAULT_SHUTDOWN_TIMEOUT;
  g_d.shutdown_timer = loop_timer_new(on_shutdown_timeout, NULL);
  loop_timer_start(g_d.shutdown_timer, (uint64_t)(t / NS_PER_MS));
  /* Databases closing after a reload count too (on_reload_closed), and so
   * do their new instances waiting to start: each still runs once, to
   * upload what was committed after its old instance's final sync. */
  size_t n_pending = 0;
  for (struct pending_start *p = g_pending; p; p = p->next)
    n_pending++;
  g_d.open_dbs =
      (int)(g_d.n_dbs + g_d.n_closing + n_pending + g_d.n_dormant) + 1;
  size_t nd;
  char **dp = dormant_paths(&nd);
  for (size_t i = 0; i < g_d.n_dbs; i++)
    db_close(g_d.dbs[i], on_db_closed, NULL);
  /* Dormant ones after the others: the last holder of an entry's lease
   * releases it. */
  for (size_t i = 0; i < nd; i++) {
    struct dormant *d = smap_get(&g_d.dormant, dp[i]);
    free(dp[i]);
    if (!d)
      continue;
    d->counted = 1;
    if (!d->db) /* (closing: on_rested decides) */
      dormant_stop(d);
  }
  free(dp);
  on_db_closed(NULL);
}

static void on_signal(void *arg, int signum) {
  (void)arg;
  log_info(NULL, NULL, "signal received, %s",
           g_d.child ? "stopping child" : "shutting down");
  if (g_d.child && !g_d.child_exited) {
    loop_child_kill(g_d.child, signum);
    return; /* shut down when the child exits */
  }
  shutdown_all();
}

static void on_child_exit(void *arg, int code, int term_signal) {
  (void)arg;
  g_d.child_exited = 1;
  g_d.child = NULL;
  g_d.exit_code = term_signal ? 128 + term_signal : code;
  if (term_signal)
    log_info(NULL, NULL, "subprocess exited: signal=%d", term_signal);
  else
    log_info(NULL, NULL, "subprocess exited: code=%d", code);
  shutdown_all(); /* always a final sync, whatever the exit status */
}

/* --- SIGHUP: reload the configuration ---
 * Databases whose whole configuration is unchanged keep running untouched
 * (same pin, same generation); removed or changed ones are closed (with a
 * final sync), then changed ones start again with the new settings; new
 * ones start.  A broken new config is rejected and the old one kept. */

static struct dormant *dormant_closing(const char *path);

static int db_path_busy(const char *path) {
  for (size_t i = 0; i < g_d.n_closing; i++)
    if (!strcmp(g_d.closing[i]->name, path))
      return 1;
  return dormant_closing(path) != NULL;
}

static void start_db(struct db *db) {
  g_d.dbs = xrealloc(g_d.dbs, (g_d.n_dbs + 1) * sizeof(struct db *));
  g_d.dbs[g_d.n_dbs++] = db;
  smap_put(&g_d.by_path, db->name, db);
  db_start(db);
}

static void vanish_done(struct db *db);
static void start_pending_for(const char *path);

static void on_reload_closed(void *arg) {
  struct db *db = arg;
  vanish_done(db);
  for (size_t i = 0; i < g_d.n_closing; i++) {
    if (g_d.closing[i] == db) {
      g_d.closing[i] = g_d.closing[--g_d.n_closing];
      break;
    }
  }
  char *path = xstrdup(db->name);
  log_info(path, NULL, "database removed from replication");
  free_db_and_cfg(db);
  start_pending_for(path);
  free(path);
  if (g_d.shutting_down)
    on_db_closed(NULL);
}

/* A changed database starts again once its old instance is gone; while
 * shutting down, only for a final sync. */
static void start_pending_for(const char *path) {
  struct pending_start **pp = &g_pending;
  while (*pp) {
    struct pending_start *p = *pp;
    if (!strcmp(p->db->name, path) && !db_path_busy(path)) {
      *pp = p->next;
      start_db(p->db);
      if (g_d.shutting_down)
        db_close(p->db, on_db_closed, NULL);
      free(p);
      continue;
    }
    pp = &p->next;
  }
}

/* --- dormancy ---
 * A database of a dir entry that is an idle stub (deep asleep: no fd, no
 * connection, every replica caught up) is closed as at a clean stop (its
 * record written, so that its next start is asleep from the start:
 * engine_start_asleep) and freed; what stays is its path, its entry, a
 * watch on its files and the entry's lease, parked (lease_park).  A change
 * to its files starts it again from that record (no request when nothing
 * was written; the same generation when something was).  Housekeeping,
 * like a database started asleep, runs again once it has something to
 * upload. */

/* What a write to a database changes: its file's and its WAL's identity,
 * size and times, hashed (FNV-1a); a file that is missing hashes as such.
 * Two stats, on the loop: as it goes dormant, at a stop, after lost events. */
static uint64_t files_state(const char *path) {
  uint64_t h = 1469598103934665603ULL;
  size_t n = strlen(path);
  char *wal = xmalloc(n + 5);
  memcpy(wal, path, n);
  memcpy(wal + n, "-wal", 5);
  const char *paths[] = {path, wal};
  for (size_t i = 0; i < 2; i++) {
    struct stat st;
    uint64_t v[6] = {0};
    if (stat(paths[i], &st) == 0) {
      v[0] = (uint64_t)st.st_dev;
      v[1] = (uint64_t)st.st_ino;
      v[2] = (uint64_t)st.st_size;
      v[3] = (uint64_t)time_ns_sat(st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
      v[4] = (uint64_t)time_ns_sat(st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
      v[5] = 1;
    }
    const unsigned char *b = (const unsigned char *)v;
    for (size_t k = 0; k < sizeof(v); k++)
      h = (h ^ b[k]) * 1099511628211ULL;
  }
  free(wal);
  return h;
}

/* Out of the map (its next instance may start, or it is dropped). */
static void dormant_unlist(struct dormant *d) {
  smap_del(&g_d.dormant, d->path);
  g_d.n_dormant--;
  g_d.n_dormant_replicas -= d->s.entry->n_replicas;
}

static void dormant_free(struct dormant *d) {
  watch_remove(d->watch);
  slab_free(d, d->size);
}

static struct db *revive(struct dormant *d);

static void on_dormant_change(void *arg, const char *name) {
  struct dormant *d = arg;
  /* Deleted or renamed away: discovery says so (daemon_vanished); there
   * is nothing to start. */
  struct stat st;
  if (stat(d->path, &st) != 0 && errno == ENOENT)
    return;
  /* Events were lost (loop/inotify.c): every dormant database hears it,
   * 100,000 of them at once perhaps; only those whose files changed since
   * they went dormant start again (two stats each, not a start). */
  if (!name && files_state(d->path) == d->files)
    return;
  if (d->db) {
    d->woken = 1;
    return;
  }
  revive(d);
}

static const struct db_config *entry_of(const struct db *db) {
  for (size_t i = 0; i < g_d.cfg.n_dirs; i++) {
    const struct db_config *e = &g_d.cfg.dirs[i];
    if (!strcmp(e->dir, db->cfg->dir) && config_dir_match(e, db->name))
      return e;
  }
  return NULL;
}

/* An idle stub that may close: a watched dir entry database whose every
 * replica holds everything, with nothing in flight or owed.  Its entry,
 * or NULL. */
static const struct db_config *dormant_entry(const struct db *db) {
  if (g_d.shutting_down || g_d.reloading || !db->cfg->dir || !db->watch ||
      db->park || !db_is_stub(db) || db->last_err || db->disk_full ||
      !db->gen[0])
    return NULL;
  int64_t now = time_now_ns();
  for (size_t j = 0; j < db->n_replicas; j++) {
    const struct replica *r = db->replicas[j];
    if (r->state != R_IDLE || replica_busy(r) || r->want_snapshot ||
        replica_lag_ns(r, now) > 0 || r->last_err || r->bw.queued || r->job ||
        r->snap || r->cfg->validation_interval > 0 ||
        (r->cfg->lease_ttl > 0 && !lease_shared(r->lease)) ||
        strcmp(r->pos.gen, db->gen))
      return NULL;
  }
  return entry_of(db);
}

/* Memory a database freed when it went dormant goes back to the system
 * (malloc_trim, on the pool: its cost grows with the heap) once a batch
 * of them has closed: 1 s after the first, at most one trim at a time. */
static void trim_work(void *arg) {
  (void)arg;
  loop_release_memory();
}

static void trim_done(void *arg, int status) {
  (void)arg;
  (void)status;
  g_d.trimming = 0;
}

static void on_trim(void *arg) {
  (void)arg;
  if (g_d.trimming || g_d.shutting_down)
    return;
  g_d.trimming = 1;
  loop_work_submit(trim_work, trim_done, NULL);
}

static void trim_soon(void) {
  if (g_d.trim_timer && !loop_timer_active(g_d.trim_timer))
    loop_timer_start(g_d.trim_timer, 1000);
}

static void on_rested(void *arg) {
  struct dormant *d = arg;
  struct db *db = d->db;
  d->db = NULL;
  free_db_and_cfg(db);
  if (g_d.shutting_down || d->dropped) {
    /* (counted by shutdown_all: on_dormant_released, or the final sync's
     * close, ends it) */
    dormant_stop(d);
    return;
  }
  log_debug(d->path, NULL,
            "dormant: closed (no fd, no connection; %zu "
            "dormant)",
            g_d.n_dormant);
  trim_soon();
  if (d->woken)
    revive(d);
}

static void on_dormant_released(void *arg) {
  struct dormant *d = arg;
  if (--d->releases_left > 0)
    return;
  int counted = d->counted;
  char *path = xstrdup(d->path);
  dormant_free(d);
  start_pending_for(path);
  free(path);
  if (counted)
    on_db_closed(NULL);
}

/* Out of the map already: lets go of its parked leases (the last holder
 * of an entry's lease releases it), then frees it. */
static void dormant_drop(struct dormant *d) {
  /* (No event starts it again while a release is in flight.) */
  watch_remove(d->watch);
  d->watch = NULL;
  d->releases_left = (int)d->n_leases + 1;
  for (size_t i = 0; i < d->n_leases; i++)
    lease_unpark_leave(d->leases[i], on_dormant_released, d);
  on_dormant_released(d);
}

static void go_dormant(struct db *db, const struct db_config *e) {
  size_t n_leases = 0;
  for (size_t j = 0; j < db->n_replicas; j++)
    n_leases += lease_shared(db->replicas[j]->lease) != 0;
  /* One slab object (base/slab.h): the record, its path, its leases. */
  size_t at = (sizeof(struct dormant) + strlen(db->name) + 1 + 7) & ~(size_t)7;
  size_t size = at + n_leases * sizeof(struct lease *);
  struct dormant *d = slab_alloc(size);
  d->size = size;
  strcpy(d->path, db->name);
  d->s.path = d->path;
  d->s.entry = e;
  memcpy(d->s.gen, db->gen, sizeof(d->s.gen));
  d->files = files_state(db->name);
  char *dir = path_dir(db->name);
  int rc =
      watch_add_file(dir, path_base(db->name), on_dormant_change, d, &d->watch);
  free(dir);
  if (rc) {
    slab_free(d, size);
    return;
  }
  d->n_leases = n_leases;
  d->leases = (struct lease **)((char *)d + at);
  for (size_t j = 0, k = 0; j < db->n_replicas; j++)
    if (lease_shared(db->replicas[j]->lease))
      d->leases[k++] = db->replicas[j]->lease;
  d->db = db;
  smap_del(&g_d.by_path, db->name);
  smap_put(&g_d.dormant, d->path, d);
  g_d.n_dormant++;
  g_d.n_dormant_replicas += e->n_replicas;
  db_close_dormant(db, on_rested, d); /* (sets db->park: out of g_d.dbs) */
}

static void on_rest(void *arg) {
  (void)arg;
  size_t n = g_d.n_rest_q, gone = 0;
  char **q = g_d.rest_q;
  g_d.rest_q = NULL;
  g_d.n_rest_q = 0;
  for (size_t i = 0; i < n; i++) {
    struct db *db = smap_get(&g_d.by_path, q[i]);
    const struct db_config *e = db ? dormant_entry(db) : NULL;
    if (e) {
      go_dormant(db, e);
      gone++;
    }
    free(q[i]);
  }
  free(q);
  if (!gone)
    return;
  size_t k = 0;
  for (size_t i = 0; i < g_d.n_dbs; i++)
    if (!g_d.dbs[i]->park)
      g_d.dbs[k++] = g_d.dbs[i];
  g_d.n_dbs = k;
}

/* db.c: db became an idle stub (from a job's end: decided later). */
static void on_stub(struct db *db) {
  if (!db->cfg->dir || g_d.shutting_down || db->park)
    return;
  g_d.rest_q = xrealloc(g_d.rest_q, (g_d.n_rest_q + 1) * sizeof(char *));
  g_d.rest_q[g_d.n_rest_q++] = xstrdup(db->name);
  if (!loop_timer_active(g_d.rest_timer))
    loop_timer_start(g_d.rest_timer, 0);
}

static void start_db(struct db *db);

static struct db *revive(struct dormant *d) {
  dormant_unlist(d);
  const struct db_config *e = d->s.entry;
  struct db_config at = {.path = d->path, .dir = e->dir};
  struct db_config *c = xcalloc(1, sizeof(*c));
  config_dir_make_db(e, config_db_rel(&at), c);
  struct db *db = new_db(c);
  db->revived = 1;
  char err[1024];
  if (db_add_replicas(db, err, sizeof(err))) {
    log_error(d->path, NULL, "cannot start: %s", err);
    free_db_and_cfg(db);
    dormant_drop(d);
    return NULL;
  }
  log_debug(d->path, NULL, "dormant: its files changed: starting again");
  start_db(db);
  /* Joined again: the parked holds end (a lease it did not join again,
   * the entry's replica root changed, is let go of). */
  for (size_t i = 0; i < d->n_leases; i++) {
    int joined = 0;
    for (size_t j = 0; j < db->n_replicas; j++)
      joined |= db->replicas[j]->lease == d->leases[i];
    if (joined)
      lease_unpark(d->leases[i]);
    else
      lease_unpark_leave(d->leases[i], NULL, NULL);
  }
  dormant_free(d);
  return db;
}

/* Stopping: a dormant database written since it went dormant (the watch's
 * event not handled yet, or handled while it closed) starts again for a
 * final sync, as a live one has; the others are let go of.  The start
 * proves what is unchanged (engine_start_asleep), so a false alarm costs
 * a few reads.  One close, one on_db_closed: its place in the count. */
static void dormant_stop(struct dormant *d) {
  if (!d->dropped && (d->woken || files_state(d->path) != d->files)) {
    log_info(d->path, NULL,
             "written while dormant: starting again for the final sync");
    struct db *db = revive(d);
    if (db)
      db_close(db, on_db_closed, NULL);
    return;
  }
  dormant_unlist(d);
  dormant_drop(d);
}

/* Deleted, renamed, or its entry reloaded: forgotten (nothing of it is
 * unreplicated: it went dormant caught up, and a change since woke it). */
static int dormant_forget(const char *path) {
  struct dormant *d = smap_get(&g_d.dormant, path);
  if (!d)
    return 0;
  if (d->db) {
    d->dropped = 1; /* on_rested drops it */
    return 1;
  }
  dormant_unlist(d);
  dormant_drop(d);
  return 1;
}

static struct dormant *dormant_closing(const char *path) {
  struct dormant *d = smap_get(&g_d.dormant, path);
  return d && d->db ? d : NULL;
}

/* Every dormant record's path (owned), for changes while iterating. */
static char **dormant_paths(size_t *n) {
  char **v = xcalloc(g_d.n_dormant + 1, sizeof(char *));
  size_t k = 0;
  const char *key;
  void *val;
  for (size_t i = 0; (i = smap_next(&g_d.dormant, i, &key, &val));)
    if (k < g_d.n_dormant)
      v[k++] = xstrdup(key);
  *n = k;
  return v;
}

/* --- live discovery (daemon/discover.c) --- */

int daemon_is_running(const char *path) {
  return smap_get(&g_d.by_path, path) != NULL ||
         smap_get(&g_d.dormant, path) != NULL;
}

static struct pending_start *find_pending(const char *path) {
  for (struct pending_start *p = g_pending; p; p = p->next)
    if (!strcmp(p->db->name, path))
      return p;
  return NULL;
}

static void vanish_done(struct db *db) {
  char key[32];
  snprintf(key, sizeof(key), "%p", (void *)db);
  char *dir = smap_del(&g_d.vanishing_dbs, key);
  if (!dir)
    return;
  intptr_t n = (intptr_t)smap_get(&g_d.vanishing, dir);
  if (n > 1) {
    smap_put(&g_d.vanishing, dir, (void *)(n - 1));
    free(dir);
    return;
  }
  smap_del(&g_d.vanishing, dir);
  /* Start what was found under that dir meanwhile. */
  struct deferred *list = g_d.deferred, *keep = NULL;
  g_d.deferred = NULL;
  while (list) {
    struct deferred *d = list;
    list = d->next;
    if (strcmp(d->e->dir, dir)) {
      d->next = keep;
      keep = d;
      continue;
    }
    if (!g_d.shutting_down)
      daemon_discovered(d->e, d->rel);
    free(d->rel);
    free(d);
  }
  while (keep) {
    struct deferred *d = keep;
    keep = d->next;
    d->next = g_d.deferred;
    g_d.deferred = d;
  }
  free(dir);
}

static void free_deferred(void) {
  while (g_d.deferred) {
    struct deferred *d = g_d.deferred;
    g_d.deferred = d->next;
    free(d->rel);
    free(d);
  }
}

void daemon_discovered(const struct db_config *e, const char *rel) {
  if (g_d.shutting_down)
    return;
  char *path = path_join(e->dir, rel);
  struct dormant *dor = smap_get(&g_d.dormant, path);
  if (smap_get(&g_d.by_path, path) || find_pending(path) ||
      (dor && !dor->dropped))
    goto out;
  if (smap_get(&g_d.vanishing, e->dir)) {
    for (struct deferred *d = g_d.deferred; d; d = d->next)
      if (d->e == e && !strcmp(d->rel, rel))
        goto out;
    struct deferred *d = xcalloc(1, sizeof(*d));
    d->e = e;
    d->rel = xstrdup(rel);
    d->next = g_d.deferred;
    g_d.deferred = d;
    goto out;
  }
  /* Two entries matching one file: a config error, logged once. */
  for (size_t i = 0; i < g_d.cfg.n_dirs; i++) {
    const struct db_config *f = &g_d.cfg.dirs[i];
    if (f == e || !config_dir_match(f, path))
      continue;
    if (!smap_get(&g_d.conflicts, path)) {
      smap_put(&g_d.conflicts, path, (void *)1);
      log_error(path, NULL,
                "%s: dbs: database %s is matched by two entries (lines %d and "
                "%d): not replicated until one of them is changed",
                g_d.cfg.path ? g_d.cfg.path : "config", path,
                MIN(e->line, f->line), MAX(e->line, f->line));
    }
    goto out;
  }
  struct db_config *c = xcalloc(1, sizeof(*c));
  config_dir_make_db(e, rel, c);
  struct db *db = new_db(c);
  char err[1024];
  if (db_add_replicas(db, err, sizeof(err))) {
    log_error(path, NULL, "cannot start: %s", err);
    free_db_and_cfg(db);
    goto out;
  }
  log_info(path, NULL, "database found in dir %s: replicating", e->dir);
  if (db_path_busy(db->name)) { /* its previous instance is closing */
    struct pending_start *p = xcalloc(1, sizeof(*p));
    p->db = db;
    p->next = g_pending;
    g_pending = p;
  } else {
    start_db(db);
  }
out:
  free(path);
}

static void stop_db(struct db *db, const char *why) {
  smap_del(&g_d.by_path, db->name);
  for (size_t i = 0; i < g_d.n_dbs; i++) {
    if (g_d.dbs[i] == db) {
      memmove(&g_d.dbs[i], &g_d.dbs[i + 1],
              (g_d.n_dbs - i - 1) * sizeof(*g_d.dbs));
      g_d.n_dbs--;
      break;
    }
  }
  log_info(db->name, NULL, "%s: stopping replication (final sync)", why);
  g_d.closing =
      xrealloc(g_d.closing, (g_d.n_closing + 1) * sizeof(struct db *));
  g_d.closing[g_d.n_closing++] = db;
  db_close(db, on_reload_closed, db);
}

void daemon_vanished(const char *path) {
  smap_del(&g_d.conflicts, path);
  if (g_d.shutting_down)
    return;
  struct pending_start **pp = &g_pending;
  while (*pp) { /* not started yet: never will */
    struct pending_start *p = *pp;
    if (!strcmp(p->db->name, path)) {
      *pp = p->next;
      free_db_and_cfg(p->db);
      free(p);
      continue;
    }
    pp = &p->next;
  }
  for (struct deferred **dp = &g_d.deferred; *dp;) {
    struct deferred *d = *dp;
    char *p = path_join(d->e->dir, d->rel);
    int same = !strcmp(p, path);
    free(p);
    if (same) {
      *dp = d->next;
      free(d->rel);
      free(d);
    } else {
      dp = &d->next;
    }
  }
  if (dormant_forget(path)) {
    log_info(path, NULL,
             "database deleted or renamed: stopped (it was dormant: nothing "
             "to sync)");
    return;
  }
  struct db *db = smap_get(&g_d.by_path, path);
  if (!db)
    return;
  if (db->cfg->dir) {
    char key[32];
    snprintf(key, sizeof(key), "%p", (void *)db);
    smap_put(&g_d.vanishing_dbs, key, xstrdup(db->cfg->dir));
    intptr_t n = (intptr_t)smap_get(&g_d.vanishing, db->cfg->dir);
    smap_put(&g_d.vanishing, db->cfg->dir, (void *)(n + 1));
  }
  stop_db(db, "database deleted or renamed");
}

void daemon_vanished_under(const char *abs) {
  if (g_d.shutting_down)
    return;
  size_t n = strlen(abs), nd;
  char **dp = dormant_paths(&nd);
  for (size_t i = 0; i < nd; i++) {
    if (!strncmp(dp[i], abs, n) && dp[i][n] == '/')
      daemon_vanished(dp[i]);
    free(dp[i]);
  }
  free(dp);
  for (size_t i = 0; i < g_d.n_dbs;) {
    struct db *db = g_d.dbs[i];
    if (!strncmp(db->name, abs, n) && db->name[n] == '/' && db->cfg->dir) {
      daemon_vanished(db->name); /* removes it from g_d.dbs */
      continue;
    }
    i++;
  }
}

/* Loading the file and scanning the dir entries (proportional to the
 * files there) run on the pool; applying the result on the loop. */
struct reload_job {
  struct config *nc;
  int rc;
  char err[1024];
};

static void reload_work(void *arg) {
  struct reload_job *j = arg;
  j->rc = config_load(g_d.config_path, g_d.expand_env, j->nc, j->err,
                      sizeof(j->err));
  if (!j->rc)
    j->rc = config_expand_dirs(j->nc, j->err, sizeof(j->err));
}

static void reload_apply(struct config *nc);

static void on_hup(void *arg, int signum);

static void reload_done(void *arg, int status) {
  (void)status;
  struct reload_job *j = arg;
  g_d.reloading = 0;
  if (g_d.shutting_down) {
    config_destroy(j->nc);
    free(j->nc);
  } else if (j->rc) {
    log_error(NULL, NULL,
              "reload rejected, keeping the current configuration: %s", j->err);
    config_destroy(j->nc);
    free(j->nc);
  } else {
    reload_apply(j->nc);
  }
  free(j);
  if (g_d.reload_again && !g_d.shutting_down) {
    g_d.reload_again = 0;
    on_hup(NULL, SIGHUP);
  }
}

static void on_hup(void *arg, int signum) {
  (void)arg;
  (void)signum;
  if (g_d.shutting_down)
    return;
  if (!g_d.config_path) {
    log_warn(NULL, NULL, "SIGHUP ignored: no configuration file to reload");
    return;
  }
  if (g_d.reloading) {
    g_d.reload_again = 1;
    return;
  }
  g_d.reloading = 1;
  struct reload_job *j = xcalloc(1, sizeof(*j));
  j->nc = xcalloc(1, sizeof(*j->nc));
  loop_work_submit(reload_work, reload_done, j);
}

/* The process-wide request budget and bound on uploads (core/budget.h). */
static void apply_budget(const struct config *c) {
  budget_configure(c->max_requests_per_second, c->max_uploads_in_flight);
  struct budget_stats st;
  budget_get_stats(&st);
  if (st.rps > 0)
    log_info(NULL, NULL,
             "request budget: %lld requests per second for every replica "
             "together, at most %lld uploads in flight; uploads wait their "
             "turn, least recently served first",
             (long long)st.rps, (long long)st.max_in_flight);
}

static void reload_apply(struct config *nc) {
  char err[1024];
  discover_stop(g_d.disc);
  g_d.disc = NULL;
  free_deferred();
  if (g_d.verbose)
    nc->logging.level = LOG_DEBUG;
  log_setup(&nc->logging);
  apply_budget(nc);
  /* Dormant databases start again under the new configuration (asleep
   * from the start, unless written); their records go after, so that an
   * entry's lease they parked is joined again before they let go. */
  size_t n_dor, n_old = 0;
  char **dor = dormant_paths(&n_dor);
  struct dormant **old_dor = xcalloc(n_dor + 1, sizeof(*old_dor));
  for (size_t i = 0; i < n_dor; i++) {
    struct dormant *d = smap_get(&g_d.dormant, dor[i]);
    free(dor[i]);
    if (d && !d->db) { /* out of the way of the new instance */
      dormant_unlist(d);
      old_dor[n_old++] = d;
    } else if (d) {
      d->dropped = 1; /* its close ends first (db_path_busy) */
    }
  }
  free(dor);
  int *kept = xcalloc(nc->n_dbs + 1, sizeof(int));
  size_t n_keep = 0, n_changed = 0, n_removed = 0;
  struct db **keep = xcalloc(g_d.n_dbs + 1, sizeof(struct db *));
  for (size_t i = 0; i < g_d.n_dbs; i++) {
    struct db *db = g_d.dbs[i];
    struct db_config *nd = config_find_db(nc, db->name);
    int same = 0;
    if (nd) {
      char *a = config_db_fingerprint(db->cfg), *b = config_db_fingerprint(nd);
      same = !strcmp(a, b);
      free(a);
      free(b);
    }
    if (same) {
      kept[nd - nc->dbs] = 1;
      if (cfg_owned(db->cfg)) { /* backends may still point into it */
        g_d.retired =
            xrealloc(g_d.retired, (g_d.n_retired + 1) * sizeof(*g_d.retired));
        g_d.retired[g_d.n_retired++] = db->cfg;
      }
      db->cfg = nd;
      for (size_t j = 0; j < db->n_replicas; j++)
        db->replicas[j]->cfg = &nd->replicas[j];
      keep[n_keep++] = db;
      continue;
    }
    /* Found by live discovery after the reload's scan: the new discovery
     * finds it again (or that it is gone). */
    int watched = 0;
    for (size_t k = 0; !nd && k < nc->n_dirs && !watched; k++)
      watched = nc->dirs[k].watch && config_dir_match(&nc->dirs[k], db->name);
    if (watched) {
      keep[n_keep++] = db;
      continue;
    }
    log_info(db->name, NULL,
             nd ? "configuration changed: restarting replication"
                : "no longer in the configuration: stopping");
    if (nd)
      n_changed++;
    else
      n_removed++;
    g_d.closing =
        xrealloc(g_d.closing, (g_d.n_closing + 1) * sizeof(struct db *));
    g_d.closing[g_d.n_closing++] = db;
    db_close(db, on_reload_closed, db);
  }
  free(g_d.dbs);
  g_d.dbs = keep;
  g_d.n_dbs = n_keep;
  smap_destroy(&g_d.by_path);
  for (size_t i = 0; i < n_keep; i++)
    smap_put(&g_d.by_path, keep[i]->name, keep[i]);
  for (size_t i = 0; i < nc->n_dbs; i++) {
    if (kept[i])
      continue;
    struct db *db = new_db(&nc->dbs[i]);
    if (db_add_replicas(db, err, sizeof(err))) {
      log_error(db->name, NULL, "cannot start: %s", err);
      free_db_and_cfg(db);
      continue;
    }
    if (db_path_busy(db->name)) {
      struct pending_start *p = xcalloc(1, sizeof(*p));
      p->db = db;
      p->next = g_pending;
      g_pending = p;
    } else {
      start_db(db);
    }
  }
  free(kept);
  for (size_t i = 0; i < n_old; i++)
    dormant_drop(old_dor[i]);
  free(old_dor);
  /* The metrics server follows `addr`. */
  if (!nc->addr != !g_d.cfg.addr ||
      (nc->addr && strcmp(nc->addr, g_d.cfg.addr))) {
    httpd_stop(g_d.httpd);
    g_d.httpd = NULL;
    if (nc->addr && nc->addr[0] &&
        httpd_start(nc->addr, serve, NULL, &g_d.httpd, err, sizeof(err)))
      log_error(NULL, NULL, "metrics server: %s", err);
  }
  free(nc->exec);
  nc->exec = g_d.cfg.exec ? xstrdup(g_d.cfg.exec) : NULL;
  struct config *old = xmalloc(sizeof(*old));
  *old = g_d.cfg;
  g_d.old_cfgs = xrealloc(g_d.old_cfgs, (g_d.n_old_cfgs + 1) * sizeof(*old));
  g_d.old_cfgs[g_d.n_old_cfgs++] = old;
  size_t n_total = nc->n_dbs;
  g_d.cfg = *nc;
  free(nc);
  g_d.disc = discover_start(&g_d.cfg);
  /* Counted from the new configuration: a database being restarted is
   * not in g_d.dbs until its old replication has closed. */
  log_info(NULL, NULL,
           "configuration reloaded: %zu databases (%zu unchanged, %zu "
           "restarted, %zu added, %zu removed)",
           n_total, n_keep, n_changed, n_total - n_keep - n_changed, n_removed);
}

static int start_exec(const char *cmdline) {
  char **argv = split_words(cmdline);
  if (!argv) {
    log_error(NULL, NULL, "cannot parse -exec command: %s", cmdline);
    return 1;
  }
  int rc = loop_child_spawn(argv, on_child_exit, NULL, &g_d.child);
  if (rc)
    log_error(NULL, NULL, "cannot start subprocess %s: %s", argv[0],
              strerror(-rc));
  else
    log_info(NULL, NULL, "started subprocess: pid=%d",
             loop_child_pid(g_d.child));
  for (char **p = argv; *p; p++)
    free(*p);
  free(argv);
  return rc ? 1 : 0;
}

int daemon_run(struct daemon_opts *o) {
  int rc = 1;
  memset(&g_d, 0, sizeof(g_d));
  g_d.by_path.borrow = 1; /* keyed by db->name, which outlives the entry */
  g_d.dormant.borrow = 1; /* keyed by the record's path */
  g_d.cfg = o->cfg;
  memset(&o->cfg, 0, sizeof(o->cfg));
  g_d.config_path = o->config_path;
  o->config_path = NULL;
  g_d.expand_env = o->expand_env;
  g_d.verbose = o->verbose;

  engine_global_init();
  config_set_probe_guard(&g_guard);
  if (loop_init() || http_init()) {
    fprintf(stderr, "cannot initialise the event loop\n");
    goto out;
  }
  long nofile = loop_raise_nofile();
  log_info(NULL, NULL, "sluice v%s", SLUICE_VERSION);
  if (g_d.cfg.n_dbs == 0 && g_d.cfg.n_dirs == 0)
    log_error(NULL, NULL, "no databases specified in configuration");
  struct db_limits lim;
  db_limits_for(nofile > 0 ? nofile : 1024, g_d.cfg.n_dbs,
                g_d.cfg.max_hot_databases, g_d.cfg.deep_sleep_after, &lim);
  db_set_limits(&lim);
  apply_budget(&g_d.cfg);
  if (nofile > 0 && g_d.cfg.n_dbs > lim.max_hot + lim.max_light)
    log_warn(NULL, NULL,
             "open file limit %ld: %zu databases do not all fit awake or in "
             "light sleep (%zu hot at once, %zu light sleepers): the others "
             "sleep deep (no fd; a wake may resync); raise LimitNOFILE / "
             "ulimit -n to avoid it",
             nofile, g_d.cfg.n_dbs, lim.max_hot, lim.max_light);

  g_d.dbs = xcalloc(g_d.cfg.n_dbs + 1, sizeof(struct db *));
  for (size_t i = 0; i < g_d.cfg.n_dbs; i++) {
    struct db *db = new_db(&g_d.cfg.dbs[i]);
    g_d.dbs[g_d.n_dbs++] = db;
    smap_put(&g_d.by_path, db->name, db);
    char err[1024];
    if (db_add_replicas(db, err, sizeof(err))) {
      fprintf(stderr, "%s\n", err);
      goto out_loop;
    }
  }
  for (size_t i = 0; i < g_d.n_dbs; i++)
    db_start(g_d.dbs[i]);
  g_d.rest_timer = loop_timer_new(on_rest, NULL);
  g_d.trim_timer = loop_timer_new(on_trim, NULL);
  db_set_stub_hook(on_stub);
  g_d.disc = discover_start(&g_d.cfg);

  if (g_d.cfg.addr && g_d.cfg.addr[0]) {
    char err[256];
    if (httpd_start(g_d.cfg.addr, serve, NULL, &g_d.httpd, err, sizeof(err)))
      log_error(NULL, NULL, "metrics server: %s", err);
    else
      log_info(NULL, NULL, "serving metrics on http://%s%s/metrics",
               g_d.cfg.addr[0] == ':' ? "localhost" : "", g_d.cfg.addr);
  }
  g_d.ready_timer = loop_timer_new(on_ready_check, NULL);
  loop_timer_start(g_d.ready_timer, 0);
  uint64_t wd = sd_watchdog_usec();
  if (wd) {
    g_d.watchdog_ms = wd / 2000 ? wd / 2000 : 1;
    g_d.watchdog_timer = loop_timer_new(on_watchdog, NULL);
    loop_timer_start(g_d.watchdog_timer, g_d.watchdog_ms);
  }
  g_d.sig_int = loop_signal_new(SIGINT, on_signal, NULL);
  g_d.sig_term = loop_signal_new(SIGTERM, on_signal, NULL);
  g_d.sig_hup = loop_signal_new(SIGHUP, on_hup, NULL);
  signal(SIGPIPE, SIG_IGN);
  if (g_d.cfg.exec && g_d.cfg.exec[0] && start_exec(g_d.cfg.exec)) {
    /* The databases are open and watched: close them through the normal
     * shutdown (freeing them with watches live crashed in loop_close). */
    g_d.exit_code = 1;
    shutdown_all();
  }

  while (!g_d.done)
    loop_run();
  rc = g_d.exit_code;

out_loop:
  loop_signal_free(g_d.sig_int);
  loop_signal_free(g_d.sig_term);
  loop_signal_free(g_d.sig_hup);
  loop_timer_free(g_d.shutdown_timer);
  loop_timer_free(g_d.ready_timer);
  loop_timer_free(g_d.watchdog_timer);
  loop_timer_free(g_d.rest_timer);
  loop_timer_free(g_d.trim_timer);
  g_d.rest_timer = g_d.trim_timer = NULL;
  db_set_stub_hook(NULL);
  httpd_stop(g_d.httpd);
  /* Callbacks run now, while the replicas exist.  Pool jobs point into the
   * databases: let them finish first.  A job's completion may submit a new
   * request (a validation restore moving to its next segment): abort again
   * after each turn, so none is left in flight when the loop closes. */
  for (;;) {
    http_abort_all();
    if (loop_work_pending() <= 0 || !loop_run_once())
      break;
  }
  discover_stop(g_d.disc); /* an -exec failure at start */
  g_d.disc = NULL;
  for (size_t i = 0; i < g_d.n_dbs; i++)
    free_db_and_cfg(g_d.dbs[i]);
  free(g_d.dbs);
  /* Removed by a reload or by discovery, still closing when the shutdown
   * timed out (abandoned: their close never ends now). */
  for (size_t i = 0; i < g_d.n_closing; i++)
    free_db_and_cfg(g_d.closing[i]);
  g_d.n_closing = 0;
  smap_destroy(&g_d.by_path);
  {
    size_t nd;
    char **dp = dormant_paths(&nd);
    for (size_t i = 0; i < nd; i++) {
      struct dormant *d = smap_del(&g_d.dormant, dp[i]);
      if (d && d->db)
        free_db_and_cfg(d->db); /* abandoned while it closed */
      if (d)
        dormant_free(d);
      free(dp[i]);
    }
    free(dp);
    smap_destroy(&g_d.dormant);
    for (size_t i = 0; i < g_d.n_rest_q; i++)
      free(g_d.rest_q[i]);
    free(g_d.rest_q);
  }
  smap_destroy(&g_d.conflicts);
  free_deferred();
  smap_destroy(&g_d.vanishing);
  {
    const char *k;
    void *v;
    for (size_t i = 0; (i = smap_next(&g_d.vanishing_dbs, i, &k, &v));)
      free(v);
    smap_destroy(&g_d.vanishing_dbs);
  }
  while (g_pending) { /* never started: the shutdown timed out first */
    struct pending_start *p = g_pending;
    g_pending = p->next;
    free_db_and_cfg(p->db);
    free(p);
  }
  http_shutdown();
  budget_shutdown();
  if (loop_close())
    log_debug(NULL, NULL, "loop closed with handles still open");
out:
  config_destroy(&g_d.cfg);
  for (size_t i = 0; i < g_d.n_old_cfgs; i++) {
    config_destroy(g_d.old_cfgs[i]);
    free(g_d.old_cfgs[i]);
  }
  free(g_d.old_cfgs);
  for (size_t i = 0; i < g_d.n_retired; i++) {
    config_db_destroy(g_d.retired[i]);
    free(g_d.retired[i]);
  }
  free(g_d.retired);
  free(g_d.closing);
  free(g_d.config_path);
  config_set_probe_guard(NULL);
  smap_destroy(&g_inuse);
  return rc;
}
