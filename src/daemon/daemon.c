/*
 * The running daemon: one loop drives every database and replica; the
 * metrics server, systemd readiness and watchdog, SIGHUP reloads, the -exec
 * child; SIGINT/SIGTERM (or the child exiting) trigger a final sync of
 * everything, bounded by shutdown-timeout.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "config/url.h"
#include "core/db.h"
#include "core/engine.h"
#include "core/replica.h"
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
};

static struct daemon g_d;

/* Databases waiting for their old instance to close (reload). */
struct pending_start {
  struct db *db;
  struct pending_start *next;
};
static struct pending_start *g_pending;

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
  finish();
}

static int serve(void *arg, const char *path, struct buf *body,
                 const char **ctype) {
  (void)arg;
  if (!strcmp(path, "/metrics")) {
    *ctype = "text/plain; version=0.0.4; charset=utf-8";
    metrics_render(g_d.dbs, g_d.n_dbs,
                   (int64_t)g_d.n_dbs <= g_d.cfg.metrics_per_database_max,
                   body);
    return 200;
  }
  if (!strcmp(path, "/status") || !strcmp(path, "/status.json")) {
    int json = path[7] == '.';
    *ctype = json ? "application/json" : "text/plain; charset=utf-8";
    status_render(g_d.dbs, g_d.n_dbs, json, body);
    return 200;
  }
  if (!strcmp(path, "/healthz"))
    return metrics_health(g_d.dbs, g_d.n_dbs, g_d.cfg.health_max_sync_age,
                          body);
  buf_appendf(body, "404 page not found\n");
  return 404;
}

/* READY=1 once every database has been opened (or found missing). */
static void on_ready_check(void *arg) {
  (void)arg;
  for (size_t i = 0; i < g_d.n_dbs; i++) {
    if (g_d.dbs[i]->state == DB_INIT) {
      loop_timer_start(g_d.ready_timer, 20);
      return;
    }
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
  g_d.open_dbs = (int)(g_d.n_dbs + g_d.n_closing + n_pending) + 1;
  for (size_t i = 0; i < g_d.n_dbs; i++)
    db_close(g_d.dbs[i], on_db_closed, NULL);
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

static int db_path_busy(const char *path) {
  for (size_t i = 0; i < g_d.n_closing; i++)
    if (!strcmp(g_d.closing[i]->name, path))
      return 1;
  return 0;
}

static void start_db(struct db *db) {
  g_d.dbs = xrealloc(g_d.dbs, (g_d.n_dbs + 1) * sizeof(struct db *));
  g_d.dbs[g_d.n_dbs++] = db;
  db_start(db);
}

static void on_reload_closed(void *arg) {
  struct db *db = arg;
  for (size_t i = 0; i < g_d.n_closing; i++) {
    if (g_d.closing[i] == db) {
      g_d.closing[i] = g_d.closing[--g_d.n_closing];
      break;
    }
  }
  char *path = xstrdup(db->name);
  log_info(path, NULL, "database removed from replication");
  db_free(db);
  /* A changed database starts again once its old instance is gone; while
   * shutting down, only for a final sync. */
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
  free(path);
  if (g_d.shutting_down)
    on_db_closed(NULL);
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
  struct config *nc = xcalloc(1, sizeof(*nc));
  char err[1024];
  if (config_load(g_d.config_path, g_d.expand_env, nc, err, sizeof(err)) ||
      config_expand_dirs(nc, err, sizeof(err))) {
    log_error(NULL, NULL,
              "reload rejected, keeping the current configuration: %s", err);
    config_destroy(nc);
    free(nc);
    return;
  }
  if (g_d.verbose)
    nc->logging.level = LOG_DEBUG;
  log_setup(&nc->logging);
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
      db->cfg = nd;
      for (size_t j = 0; j < db->n_replicas; j++)
        db->replicas[j]->cfg = &nd->replicas[j];
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
  for (size_t i = 0; i < nc->n_dbs; i++) {
    if (kept[i])
      continue;
    struct db *db = db_new(&nc->dbs[i]);
    if (db_add_replicas(db, err, sizeof(err))) {
      log_error(db->name, NULL, "cannot start: %s", err);
      db_free(db);
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
  g_d.cfg = o->cfg;
  memset(&o->cfg, 0, sizeof(o->cfg));
  g_d.config_path = o->config_path;
  o->config_path = NULL;
  g_d.expand_env = o->expand_env;
  g_d.verbose = o->verbose;

  engine_global_init();
  if (loop_init() || http_init()) {
    fprintf(stderr, "cannot initialise the event loop\n");
    goto out;
  }
  long nofile = loop_raise_nofile();
  log_info(NULL, NULL, "sluice v%s", SLUICE_VERSION);
  if (g_d.cfg.n_dbs == 0)
    log_error(NULL, NULL, "no databases specified in configuration");
  if (nofile > 0 && (long)g_d.cfg.n_dbs * 8 + 64 > nofile)
    log_warn(NULL, NULL,
             "open file limit %ld is low for %zu databases (about 8 each); "
             "raise LimitNOFILE / ulimit -n",
             nofile, g_d.cfg.n_dbs);

  g_d.dbs = xcalloc(g_d.cfg.n_dbs + 1, sizeof(struct db *));
  for (size_t i = 0; i < g_d.cfg.n_dbs; i++) {
    struct db *db = db_new(&g_d.cfg.dbs[i]);
    g_d.dbs[g_d.n_dbs++] = db;
    char err[1024];
    if (db_add_replicas(db, err, sizeof(err))) {
      fprintf(stderr, "%s\n", err);
      goto out_loop;
    }
  }
  for (size_t i = 0; i < g_d.n_dbs; i++)
    db_start(g_d.dbs[i]);

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
  httpd_stop(g_d.httpd);
  http_abort_all(); /* callbacks run now, while the replicas exist */
  /* Pool jobs point into the databases: let them finish first. */
  while (loop_work_pending() > 0 && loop_run_once())
    ;
  for (size_t i = 0; i < g_d.n_dbs; i++)
    db_free(g_d.dbs[i]);
  free(g_d.dbs);
  while (g_pending) { /* never started: the shutdown timed out first */
    struct pending_start *p = g_pending;
    g_pending = p->next;
    db_free(p->db);
    free(p);
  }
  http_shutdown();
  if (loop_close())
    log_debug(NULL, NULL, "loop closed with handles still open");
out:
  config_destroy(&g_d.cfg);
  for (size_t i = 0; i < g_d.n_old_cfgs; i++) {
    config_destroy(g_d.old_cfgs[i]);
    free(g_d.old_cfgs[i]);
  }
  free(g_d.old_cfgs);
  free(g_d.closing);
  free(g_d.config_path);
  return rc;
}
