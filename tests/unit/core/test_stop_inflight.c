/*
 * A database closed (a reload removing it, a watched file deleted) while a
 * validation restore or a retention pass of its replica is in flight: the
 * close completes only once both have come back (canceled), so that
 * db_free after close_cb frees nothing a callback still uses (issue 11:
 * before, validator_stop and hk_stop only stopped timers, and the
 * restore's and the pass's callbacks ran on the freed replica).  Real
 * database, real file replica, real loop and thread pool.
 */
#include <sys/stat.h>
#include <unistd.h>

#include "base/err.h"
#include "core/housekeeping.h"
#include "core/t_db.h"
#include "core/validate.h"

static int g_busy_at_close; /* close_cb saw a pass or a restore running */

static void on_closed_check(void *arg) {
  struct fixture *f = arg;
  struct replica *r = f->db->replicas[0];
  if (hk_busy(r->hk) || validator_running(r->val))
    g_busy_at_close++;
  f->closed++;
}

/* The validation restore has its output open. */
static int restoring(void *a) {
  struct fixture *f = a;
  char p[600];
  snprintf(p, sizeof(p), "%s/validate-%s.%d.db.tmp", f->db->meta,
           f->db->replicas[0]->name, (int)getpid());
  struct stat st;
  return validator_running(f->db->replicas[0]->val) && stat(p, &st) == 0;
}

static void fill(const char *path, int rows) {
  char sql[400];
  snprintf(sql, sizeof(sql),
           "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS t(x);"
           "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM s "
           "WHERE i < %d) INSERT INTO t SELECT randomblob(400) FROM s;",
           rows);
  w_exec(path, sql);
}

TEST(close_waits_for_a_validation_restore) {
  struct fixture f;
  fx_open(&f, "val.db");
  f.cfg.replicas[0].validation_interval = 20 * NS_PER_MS;
  f.db->replicas[0]->val = validator_new(f.db->replicas[0]);
  CHECK(f.db->replicas[0]->val != NULL);
  fill(f.path, 20000); /* ~9 MB: a restore of it takes a while */
  db_start(f.db);
  /* (ThreadSanitizer on a loaded machine: a minute to get there.) */
  CHECK(t_run_until(restoring, &f, 90000));
  g_busy_at_close = 0;
  db_close(f.db, on_closed_check, &f);
  CHECK(t_run_until(is_closed, &f, 30000));
  CHECK_INT(g_busy_at_close, 0);
  char p[600];
  snprintf(p, sizeof(p), "%s/validate-%s.%d.db", f.db->meta,
           f.db->replicas[0]->name, (int)getpid());
  fx_free(&f);     /* what the daemon does after close_cb */
  t_run_for(1500); /* callbacks still due land on freed memory (ASan) */
  struct stat st;
  CHECK(stat(p, &st) != 0); /* no restore output left behind */
  CHECK(loop_work_pending() == 0);
}

TEST(close_waits_for_a_retention_pass) {
  struct fixture f;
  fx_open(&f, "ret.db");
  f.cfg.replicas[0].retention = 3600 * NS_PER_SEC;
  f.cfg.replicas[0].retention_check_interval = 3600 * NS_PER_SEC;
  fill(f.path, 10);
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 30000));
  /* Other generations, each listed once by the first pass (one request
   * each): the pass is still listing when the close is done. */
  for (int i = 0; i < 300; i++) {
    char p[700];
    snprintf(p, sizeof(p), "%s/replica-ret.db/generations/%016x/snapshots",
             g_dir, 0x100000 + i);
    char cmd[1600];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s && : > %s/00000000.snapshot.lz4", p,
             p);
    CHECK_INT(system(cmd), 0);
  }
  struct replica *r = f.db->replicas[0];
  CHECK(t_run_until(t_never, NULL, 50) == 0);
  hk_retention_check(r->hk);
  CHECK(hk_busy(r->hk));
  g_busy_at_close = 0;
  db_close(f.db, on_closed_check, &f);
  CHECK(t_run_until(is_closed, &f, 30000));
  CHECK_INT(g_busy_at_close, 0);
  fx_free(&f);
  t_run_for(1500);
  CHECK(loop_work_pending() == 0);
}

struct run {
  int done, status;
};
static void on_run(void *arg, int status, const char *err) {
  struct run *r = arg;
  (void)err;
  r->done = 1;
  r->status = status;
}
static int run_done(void *a) {
  return ((struct run *)a)->done;
}

/* restore_cancel at every stage of a restore (listing, snapshot, WAL,
 * the final check): cb once, ERR_CANCELED, nothing left behind (output,
 * .tmp, staging files); an uncanceled restore still completes. */
TEST(restore_cancel_ends_early_and_cleans_up) {
  char url[600], err[512];
  snprintf(url, sizeof(url), "file://%s/replica-val.db", g_dir);
  struct replica_config rc;
  memset(&rc, 0, sizeof(rc));
  CHECK_INT(config_replica_from_url(url, &rc, err, sizeof(err)), 0);
  struct backend *b = backend_open(&rc, err, sizeof(err));
  CHECK(b != NULL);
  struct restore_opts o = {0};
  struct restore_target t;
  CHECK_INT(restore_choose_sync(&b, 1, &o, &t, err, sizeof(err)), 0);
  int canceled = 0;
  static const int delays[] = {0, 1, 5, 20, 50, 100, 200, 400, -1};
  for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
    char out[700], cmd[1600];
    snprintf(out, sizeof(out), "%s/cancel-%zu/r.db", g_dir, i);
    struct run r = {0};
    struct restore *rs = restore_run(b, t.gen, &o, out, on_run, &r);
    if (delays[i] >= 0) {
      if (delays[i] > 0)
        t_run_until(run_done, &r, delays[i]);
      if (!r.done) {
        restore_cancel(rs);
        restore_cancel(rs); /* twice is once */
        CHECK(!r.done);     /* never from inside the call */
      }
    }
    CHECK(t_run_until(run_done, &r, 60000));
    if (delays[i] < 0 || r.status == 0) {
      CHECK_INT(r.status, 0);
      CHECK_INT(query_int(out, "SELECT count(*) FROM t"), 20000);
      continue;
    }
    canceled++;
    CHECK_INT(r.status, ERR_CANCELED);
    /* nothing in the output's directory */
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s/cancel-%zu 2>/dev/null)\"",
             g_dir, i);
    CHECK_INT(system(cmd), 0);
  }
  printf("  %d of 8 restores canceled before their end\n", canceled);
  CHECK(canceled >= 3);
  CHECK(loop_work_pending() == 0);
  backend_close(b);
  config_replica_destroy(&rc);
}

int main(void) {
  if (t_db_init())
    return 1;
  RUN(close_waits_for_a_validation_restore);
  RUN(close_waits_for_a_retention_pass);
  RUN(restore_cancel_ends_early_and_cleans_up); /* (val.db's replica) */
  t_db_done();
  T_DONE();
}
