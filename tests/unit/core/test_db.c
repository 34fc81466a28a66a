/*
 * core/db.c on the real loop, with a real SQLite file written by this
 * process and a file replica in a temp dir: a database waiting for its
 * file, then replicating; error and backoff (the meta directory blocked
 * by a file), recovery; the close phases (final sync, replicas flushed,
 * close job) from each state, and what the replica holds afterwards,
 * restored and compared row for row.
 */
#include <unistd.h>

#include "core/t_db.h"

static int64_t g_before;
/* Caught up past g_before bytes of shadow WAL. */
static int grew_and_caught_up(void *a) {
  return ((struct fixture *)a)->db->shadow_size > g_before && caught_up(a);
}
static int backoff_1s(void *a) {
  return ((struct fixture *)a)->db->backoff_ms >= 1000;
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
  CHECK(f.db->last_err != NULL);
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
  CHECK(f.db->last_err == NULL);
  CHECK_INT(f.db->backoff_ms, 0);

  /* A commit, then close: the final sync and flush upload it. */
  w_exec(f.path, "INSERT INTO t VALUES (2);");
  fx_close(&f);
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
  fx_close(&f);
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
  fx_close(&f);
  CHECK(time_now_ns() - t0 < 5 * NS_PER_SEC);
  CHECK_INT(f.db->state, DB_CLOSED);
  CHECK(f.db->retry_timer == NULL);
  unlink(meta);
  fx_free(&f);
}

int main(void) {
  if (t_db_init())
    return 1;
  RUN(waiting_then_replicating);
  RUN(error_backoff_recovery);
  RUN(close_while_waiting_and_in_error);
  t_db_done();
  T_DONE();
}
