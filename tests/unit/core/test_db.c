/*
 * core/db.c on the real loop, with a real SQLite file written by this
 * process and a file replica in a temp dir: a database waiting for its
 * file, then replicating; error and backoff (the meta directory blocked
 * by a file), recovery; the close phases (final sync, replicas flushed,
 * close job) from each state, and what the replica holds afterwards,
 * restored and compared row for row.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backends/backend.h"
#include "base/err.h"
#include "base/log.h"
#include "base/util.h"
#include "core/db.h"
#include "core/replica.h"
#include "core/restore.h"
#include "t.h"
#include "t_loop.h"

static char g_dir[] = "/tmp/sluice-test-db.XXXXXX";

struct fixture {
  struct db_config cfg;
  struct db *db;
  char path[256];
  int closed; /* close_cb calls */
};

static void fx_open(struct fixture *f, const char *name) {
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
  f->db = db_new(&f->cfg);
  CHECK_INT(db_add_replicas(f->db, err, sizeof(err)), 0);
}

static void fx_free(struct fixture *f) {
  db_free(f->db);
  config_db_destroy(&f->cfg);
}

static void on_closed(void *arg) {
  ((struct fixture *)arg)->closed++;
}

static void w_exec(const char *path, const char *sql) {
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

static int64_t query_int(const char *path, const char *sql) {
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

static int is_waiting(void *a) {
  return ((struct fixture *)a)->db->state == DB_WAITING;
}
static int is_error(void *a) {
  return ((struct fixture *)a)->db->state == DB_ERROR;
}
static int is_closed(void *a) {
  return ((struct fixture *)a)->closed > 0;
}
/* The replica holds everything the shadow WAL holds. */
static int caught_up(void *a) {
  struct db *db = ((struct fixture *)a)->db;
  struct replica *r = db->replicas[0];
  return db->state == DB_READY && db->gen[0] && !strcmp(r->pos.gen, db->gen) &&
         r->pos.index == db->index && r->pos.offset == db->shadow_size &&
         replica_lag_ns(r, time_now_ns()) == 0;
}
static int64_t g_before;
/* Caught up past g_before bytes of shadow WAL. */
static int grew_and_caught_up(void *a) {
  return ((struct fixture *)a)->db->shadow_size > g_before && caught_up(a);
}
static int backoff_1s(void *a) {
  return ((struct fixture *)a)->db->backoff_ms >= 1000;
}

/* Restores the fixture's replica into out and checks it: integrity, and
 * the row count of the source. */
static void check_restore(struct fixture *f, const char *out, int64_t rows) {
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

/* No file: WAITING (no generation, nothing pending), found by the watch
 * when it appears, replicated, closed with the last commits uploaded. */
TEST(waiting_then_replicating) {
  struct fixture f;
  fx_open(&f, "later.db");
  db_start(f.db);
  CHECK(t_run_until(is_waiting, &f, 10000));
  CHECK_STR(f.db->gen, "");
  t_run_for(100);
  CHECK_INT(f.db->state, DB_WAITING); /* stays waiting, no retry storm */
  CHECK_INT(f.db->stats.sync_errors, 0);

  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                 "INSERT INTO t VALUES (1), (2), (3);");
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK_INT(strlen(f.db->gen), GEN_LEN);
  char gen[GEN_LEN + 1];
  snprintf(gen, sizeof(gen), "%s", f.db->gen);

  /* A commit after that: copied and uploaded (watch -> job -> replica). */
  w_exec(f.path, "INSERT INTO t VALUES (4);");
  g_before = f.db->shadow_size;
  CHECK(t_run_until(grew_and_caught_up, &f, 10000));
  CHECK_STR(f.db->gen, gen); /* same generation */

  /* Commits then close at once: the final sync copies them and the flush
   * uploads them before close_cb. */
  w_exec(f.path, "INSERT INTO t SELECT x + 4 FROM t;");
  db_close(f.db, on_closed, &f);
  CHECK_INT(f.db->state, DB_CLOSING);
  CHECK_INT(f.db->close_phase, DB_CLOSE_SYNC);
  CHECK(t_run_until(is_closed, &f, 10000));
  CHECK_INT(f.closed, 1);
  CHECK_INT(f.db->state, DB_CLOSED);
  CHECK_INT(f.db->close_phase, DB_CLOSE_FINAL);
  CHECK(f.db->job == NULL);
  CHECK_INT(f.db->replicas[0]->pending_since_ns, 0);
  /* Closed: kicks are ignored, nothing is submitted. */
  db_kick(f.db, DBJ_SYNC);
  CHECK(f.db->job == NULL);
  char out[300];
  snprintf(out, sizeof(out), "%s/restored-later.db", g_dir);
  check_restore(&f, out, 8);
  fx_free(&f);
}

/* The meta directory's path is taken by a file: every job fails.  The
 * database goes to ERROR with the error kept, retries back off (250 ms,
 * doubling), a kick during the backoff waits for it, and removing the
 * file recovers: READY, error cleared, backoff reset. */
TEST(error_backoff_recovery) {
  struct fixture f;
  fx_open(&f, "blocked.db");
  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                 "INSERT INTO t VALUES (1);");
  char meta[300];
  snprintf(meta, sizeof(meta), "%s/.blocked.db-litestream", g_dir);
  CHECK_STR(f.db->meta, meta);
  FILE *fp = fopen(meta, "w");
  CHECK(fp != NULL);
  if (fp)
    fclose(fp);
  db_start(f.db);
  CHECK(t_run_until(is_error, &f, 10000));
  CHECK(f.db->last_err[0] != '\0');
  CHECK_INT(f.db->backoff_ms, 250);
  /* A kick while backing off does not start a job. */
  db_kick(f.db, DBJ_SYNC);
  CHECK(f.db->job == NULL);
  CHECK(f.db->pending & DBJ_SYNC);
  /* 250, 500, 1000: two more failures within ~1 s. */
  CHECK(t_run_until(backoff_1s, &f, 10000));
  CHECK_INT(f.db->state, DB_ERROR);
  CHECK_STR(f.db->gen, "");
  unlink(meta);
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK_STR(f.db->last_err, "");
  CHECK_INT(f.db->backoff_ms, 0);

  /* A commit, then close: the final sync and flush upload it. */
  w_exec(f.path, "INSERT INTO t VALUES (2);");
  db_close(f.db, on_closed, &f);
  CHECK(t_run_until(is_closed, &f, 10000));
  CHECK_INT(f.closed, 1);
  char out[300];
  snprintf(out, sizeof(out), "%s/restored-blocked.db", g_dir);
  check_restore(&f, out, 2);
  fx_free(&f);
}

TEST(close_while_waiting_and_in_error) {
  /* Waiting: the final sync finds no file; close ends, nothing uploaded. */
  struct fixture f;
  fx_open(&f, "never.db");
  db_start(f.db);
  CHECK(t_run_until(is_waiting, &f, 10000));
  db_close(f.db, on_closed, &f);
  CHECK(t_run_until(is_closed, &f, 10000));
  CHECK_INT(f.db->state, DB_CLOSED);
  t_run_for(50);
  CHECK_INT(f.closed, 1);
  fx_free(&f);

  /* In ERROR (meta blocked): close is not held by the backoff. */
  fx_open(&f, "stuck.db");
  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
  char meta[300];
  snprintf(meta, sizeof(meta), "%s/.stuck.db-litestream", g_dir);
  FILE *fp = fopen(meta, "w");
  if (fp)
    fclose(fp);
  db_start(f.db);
  CHECK(t_run_until(is_error, &f, 10000));
  int64_t t0 = time_now_ns();
  db_close(f.db, on_closed, &f);
  CHECK(t_run_until(is_closed, &f, 10000));
  CHECK(time_now_ns() - t0 < 5 * NS_PER_SEC);
  CHECK_INT(f.db->state, DB_CLOSED);
  CHECK(f.db->retry_timer == NULL);
  unlink(meta);
  fx_free(&f);
}

int main(void) {
  struct log_config lc = {.level = LOG_WARN, .to_stderr = 1};
  log_setup(&lc);
  if (!mkdtemp(g_dir) || loop_init())
    return 1;
  RUN(waiting_then_replicating);
  RUN(error_backoff_recovery);
  RUN(close_while_waiting_and_in_error);
  t_run_for(20);
  loop_close();
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
  (void)!system(cmd);
  T_DONE();
}
