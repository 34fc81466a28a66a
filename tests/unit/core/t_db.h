/*
 * A database of core/db.c with one file replica in a temp dir, written by
 * this process with SQLite, for the unit tests of db, replica and
 * housekeeping (real code on the real loop; nothing mocked).
 */
#ifndef SLUICE_T_DB_H
#define SLUICE_T_DB_H

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backends/backend.h"
#include "base/log.h"
#include "base/util.h"
#include "core/db.h"
#include "core/replica.h"
#include "core/restore.h"
#include "t.h"
#include "t_loop.h"

static char g_dir[] = "/tmp/sluice-test-core.XXXXXX";

struct fixture {
  struct db_config cfg;
  struct db *db;
  char path[256];
  int closed; /* close_cb calls */
};

/* Opens (does not start) database g_dir/name replicating to
 * g_dir/replica-name every 10 ms. */
static inline void fx_open(struct fixture *f, const char *name) {
  memset(f, 0, sizeof(*f));
  snprintf(f->path, sizeof(f->path), "%s/%s", g_dir, name);
  config_db_init(&f->cfg, f->path);
  f->cfg.monitor_interval = 0; /* only the directory watch */
  f->cfg.replicas = xcalloc(1, sizeof(struct replica_config));
  f->cfg.n_replicas = 1;
  char url[300], err[512];
  snprintf(url, sizeof(url), "file://%s/replica-%s", g_dir, name);
  CHECK_INT(config_replica_from_url(url, &f->cfg.replicas[0], err, sizeof(err)),
            0);
  f->cfg.replicas[0].sync_interval = 10 * NS_PER_MS;
  /* These tests are about the replica's own uploads and the database's
   * errors (a replica directory that is a file, ...); the lease has its
   * own tests (test_lease, e2e/lease_*). */
  f->cfg.replicas[0].lease_ttl = 0;
  f->db = db_new(&f->cfg);
  CHECK_INT(db_add_replicas(f->db, err, sizeof(err)), 0);
}

static inline void fx_free(struct fixture *f) {
  db_free(f->db);
  config_db_destroy(&f->cfg);
}

static inline void on_closed(void *arg) {
  ((struct fixture *)arg)->closed++;
}

static inline void w_exec(const char *path, const char *sql) {
  sqlite3 *c;
  CHECK_INT(sqlite3_open(path, &c), SQLITE_OK);
  sqlite3_busy_timeout(c, 5000);
  char *e = NULL;
  if (sqlite3_exec(c, sql, NULL, NULL, &e) != SQLITE_OK) {
    fprintf(stderr, "%s: %s\n", sql, e);
    t_failures++;
  }
  sqlite3_free(e);
  sqlite3_close(c);
}

static inline int64_t query_int(const char *path, const char *sql) {
  sqlite3 *c;
  sqlite3_stmt *st = NULL;
  int64_t v = -1;
  if (sqlite3_open(path, &c) == SQLITE_OK &&
      sqlite3_prepare_v2(c, sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    v = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(c);
  return v;
}

static inline int is_waiting(void *a) {
  return ((struct fixture *)a)->db->state == DB_WAITING;
}
static inline int is_error(void *a) {
  return ((struct fixture *)a)->db->state == DB_ERROR;
}
static inline int is_closed(void *a) {
  return ((struct fixture *)a)->closed > 0;
}
/* The replica holds everything the shadow WAL holds. */
static inline int caught_up(void *a) {
  struct db *db = ((struct fixture *)a)->db;
  struct replica *r = db->replicas[0];
  return db->state == DB_READY && db->gen[0] && !strcmp(r->pos.gen, db->gen) &&
         r->pos.index == db->index && r->pos.offset == db->shadow_size &&
         replica_lag_ns(r, time_now_ns()) == 0;
}
/* Restores the fixture's replica into out and checks it: integrity, and
 * the row count of the source. */
static inline void check_restore(struct fixture *f, const char *out,
                                 int64_t rows) {
  struct backend *b = f->db->replicas[0]->b;
  struct restore_opts o = {0};
  struct restore_target t;
  char err[512];
  CHECK_INT(restore_choose_sync(&b, 1, &o, &t, err, sizeof(err)), 0);
  CHECK_INT(restore_run_sync(b, t.gen, &o, out, err, sizeof(err)), 0);
  CHECK_INT(query_int(out, "SELECT count(*) FROM t"), rows);
  sqlite3 *c;
  sqlite3_stmt *st = NULL;
  const char *ok = NULL;
  if (sqlite3_open(out, &c) == SQLITE_OK &&
      sqlite3_prepare_v2(c, "PRAGMA integrity_check", -1, &st, NULL) ==
          SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    ok = (const char *)sqlite3_column_text(st, 0);
  CHECK_STR(ok, "ok");
  sqlite3_finalize(st);
  sqlite3_close(c);
}

/* Closes f's database (final sync, replicas flushed, close job) and
 * waits for close_cb. */
static inline void fx_close(struct fixture *f) {
  db_close(f->db, on_closed, f);
  CHECK(t_run_until(is_closed, f, 10000));
}

/* main()'s start: quiet logs, the temp dir, the loop.  0 on success. */
static inline int t_db_init(void) {
  struct log_config lc = {.level = LOG_WARN, .to_stderr = 1};
  log_setup(&lc);
  return !mkdtemp(g_dir) || loop_init() ? -1 : 0;
}

/* main()'s end: the loop closed, the temp dir removed. */
static inline void t_db_done(void) {
  t_run_for(20);
  loop_close();
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
  (void)!system(cmd);
}

#endif
