/*
 * core/db.c on the real loop, with a real SQLite file written by this
 * process and a file replica in a temp dir: a database waiting for its
 * file, then replicating; error and backoff (the meta directory blocked
 * by a file), recovery; the close phases (final sync, replicas flushed,
 * close job) from each state, and what the replica holds afterwards,
 * restored and compared row for row.
 */
#include <sys/stat.h>
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

static uint32_t g_index;
/* Moved past g_index:g_before (a wake starts the next WAL index) and
 * caught up. */
static int moved_and_caught_up(void *a) {
  const struct db *db = ((struct fixture *)a)->db;
  return (db->index != g_index || db->shadow_size > g_before) && caught_up(a);
}

static int start_decided(void *a) {
  return db_start_decided(((struct fixture *)a)->db);
}

/* Opens the only database of c's dir entry (as the daemon does). */
static void fx_open_dir_db(struct fixture *f, struct config *c) {
  memset(f, 0, sizeof(*f));
  char err[512];
  f->db = db_new(&c->dbs[0]);
  CHECK_INT(db_add_replicas(f->db, err, sizeof(err)), 0);
}

/* A dir entry's database sharing its entry's replica config (the daemon
 * now) is the same replica as with a copy of its own (before, and every
 * command): the same location, and the same identity in its status file,
 * so the daemon restarted across the change starts it asleep (its saved
 * position trusted, no request), and the other way round. */
TEST(dir_db_shared_config_is_the_same_replica) {
  char ten[256], path[300];
  snprintf(ten, sizeof(ten), "%s/ten", g_dir);
  snprintf(path, sizeof(path), "%s/acme", ten);
  CHECK_INT(mkdir(ten, 0755), 0);
  CHECK_INT(mkdir(path, 0755), 0);
  snprintf(path, sizeof(path), "%s/acme/a.db", ten);
  w_exec(path, "PRAGMA journal_mode=WAL;"
               "CREATE TABLE t(id INTEGER PRIMARY KEY, v);"
               "INSERT INTO t(v) VALUES (1), (2), (3);");
  char *yml = xasprintf("dbs:\n"
                        "  - dir: %s\n"
                        "    pattern: '*.db'\n"
                        "    recursive: true\n"
                        "    replica:\n"
                        "      url: file://%s/rep\n"
                        "      sync-interval: 10ms\n"
                        "      lease-ttl: 0\n",
                        ten, g_dir);
  struct config own, shared;
  char err[512];
  CHECK_INT(config_parse("t.yml", yml, 0, &own, err, sizeof(err)), 0);
  CHECK_INT(config_expand_dirs(&own, err, sizeof(err)), 0);
  config_share_dir_replicas(1);
  CHECK_INT(config_parse("t.yml", yml, 0, &shared, err, sizeof(err)), 0);
  CHECK_INT(config_expand_dirs(&shared, err, sizeof(err)), 0);
  config_share_dir_replicas(0);
  free(yml);
  CHECK_INT((int)own.n_dbs, 1);
  CHECK_INT((int)shared.n_dbs, 1);
  if (own.n_dbs != 1 || shared.n_dbs != 1)
    return;
  CHECK(shared.dbs[0].shared && !own.dbs[0].shared);

  struct config *order[2][2] = {{&shared, &own}, {&own, &shared}};
  for (int k = 0; k < 2; k++) {
    struct fixture f;
    fx_open_dir_db(&f, order[k][0]);
    db_start(f.db);
    CHECK(t_run_until(caught_up, &f, 10000));
    char *desc = xstrdup(f.db->replicas[0]->b->desc);
    fx_close(&f);
    db_free(f.db);
    /* Restarted with the other kind of config: asleep from the start. */
    fx_open_dir_db(&f, order[k][1]);
    CHECK_STR(f.db->replicas[0]->b->desc, desc);
    db_start(f.db);
    CHECK(t_run_until(start_decided, &f, 10000));
    CHECK_INT(f.db->start, DB_START_ASLEEP);
    CHECK_INT(query_int(path, "SELECT count(*) FROM t"), 3 + k);
    g_before = f.db->shadow_size; /* woken by the write, same generation */
    g_index = f.db->index;
    char gen[GEN_LEN + 1];
    memcpy(gen, f.db->gen, sizeof(gen));
    w_exec(path, "INSERT INTO t(v) VALUES (4);");
    CHECK(t_run_until(moved_and_caught_up, &f, 10000));
    CHECK_STR(f.db->gen, gen);
    char out[300];
    snprintf(out, sizeof(out), "%s/restored-shared-%d.db", g_dir, k);
    check_restore(&f, out, 4 + k);
    fx_close(&f);
    db_free(f.db);
    free(desc);
  }
  config_destroy(&own);
  config_destroy(&shared);
}

int main(void) {
  if (t_db_init())
    return 1;
  RUN(waiting_then_replicating);
  RUN(error_backoff_recovery);
  RUN(close_while_waiting_and_in_error);
  RUN(dir_db_shared_config_is_the_same_replica);
  t_db_done();
  T_DONE();
}
