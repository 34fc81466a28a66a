/*
 * core/replica.c on the real loop with a real database and file replica:
 * retry with backoff while the store refuses writes (1 s, doubling), the
 * error and the lag it reports, recovery; a shutdown while it still fails
 * (the flush tries once and ends, so the close ends); and resume after a
 * restart: the position found by listing the store, no new snapshot, the
 * same generation, every row restored; and a snapshot taken while the
 * replica is behind goes only after the segments up to its position (a
 * restore finding it must find them too), at once, not a sync-interval
 * later; a second snapshot of the same WAL index is not taken.
 */
#include <unistd.h>

#include "core/t_db.h"

static int in_backoff(void *a) {
  return ((struct fixture *)a)->db->replicas[0]->state == R_BACKOFF;
}
static int backoff_2s(void *a) {
  return ((struct fixture *)a)->db->replicas[0]->backoff_ms >= 2000;
}

/* The replica's directory is a file: every upload fails. */
static void block(const char *name, int on) {
  char p[300];
  snprintf(p, sizeof(p), "%s/replica-%s", g_dir, name);
  if (on) {
    FILE *fp = fopen(p, "w");
    if (fp)
      fclose(fp);
  } else {
    unlink(p);
  }
}

TEST(backoff_and_recovery) {
  struct fixture f;
  fx_open(&f, "flaky.db");
  block("flaky.db", 1);
  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                 "INSERT INTO t VALUES (1), (2);");
  db_start(f.db);
  struct replica *r = f.db->replicas[0];
  CHECK(t_run_until(in_backoff, &f, 10000));
  CHECK_INT(r->backoff_ms, 1000);
  CHECK(r->upload_errors >= 1);
  CHECK(r->last_err && strstr(r->last_err, "replica-flaky.db") != NULL);
  CHECK(pos_is_zero(&r->pos) || strcmp(r->pos.gen, f.db->gen));
  /* Still failing a second later: the delay doubled, the lag grows. */
  CHECK(t_run_until(backoff_2s, &f, 10000));
  CHECK_INT(r->state, R_BACKOFF);
  /* (About the first backoff, 1 s, by now; a little less when the loop's
   * cached time was stale as the backoff timer was armed: libuv times a
   * timer from the iteration's start, so under load it fires early.) */
  CHECK(replica_lag_ns(r, time_now_ns()) >= NS_PER_SEC / 2);
  int64_t errors = r->upload_errors;
  CHECK(errors >= 2);
  /* A new commit during the backoff does not bypass it. */
  w_exec(f.path, "INSERT INTO t VALUES (3);");
  t_run_for(200);
  CHECK_INT(r->state, R_BACKOFF);
  CHECK_INT(r->upload_errors, errors);

  block("flaky.db", 0);
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK(r->last_err == NULL);
  CHECK_INT(r->backoff_ms, 0);
  CHECK(r->last_sync_ns > 0);
  CHECK_INT(r->upload_errors, errors);
  CHECK_INT(r->snapshots, 1);

  fx_close(&f);
  char out[300];
  snprintf(out, sizeof(out), "%s/restored-flaky.db", g_dir);
  check_restore(&f, out, 3);
  fx_free(&f);
}

/* Shutdown while the store keeps failing: the flush makes one attempt,
 * says what was not uploaded, and the close still ends. */
TEST(close_while_failing) {
  struct fixture f;
  fx_open(&f, "down.db");
  block("down.db", 1);
  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);");
  db_start(f.db);
  CHECK(t_run_until(in_backoff, &f, 10000));
  int64_t t0 = time_now_ns();
  fx_close(&f);
  CHECK(time_now_ns() - t0 < 5 * NS_PER_SEC);
  CHECK_INT(f.db->replicas[0]->state, R_IDLE);
  CHECK(f.db->replicas[0]->pending_since_ns > 0); /* not uploaded */
  block("down.db", 0);
  fx_free(&f);
}

/* A second process life on the same files: the replica finds its
 * position in the store, uploads only what is new, no new snapshot. */
TEST(resume_after_restart) {
  struct fixture f;
  fx_open(&f, "resume.db");
  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                 "INSERT INTO t VALUES (1), (2);");
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  char gen[GEN_LEN + 1];
  snprintf(gen, sizeof(gen), "%s", f.db->gen);
  struct pos at = f.db->replicas[0]->pos;
  fx_close(&f);
  fx_free(&f);

  w_exec(f.path, "INSERT INTO t VALUES (3), (4), (5);"); /* while stopped */
  fx_open(&f, "resume.db");
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  struct replica *r = f.db->replicas[0];
  CHECK_STR(f.db->gen, gen);
  CHECK_STR(r->pos.gen, gen);
  CHECK(pos_cmp(&r->pos, &at) > 0);
  CHECK_INT(r->snapshots, 0);
  CHECK(r->wal_bytes > 0);
  fx_close(&f);
  char out[300];
  snprintf(out, sizeof(out), "%s/restored-resume.db", g_dir);
  check_restore(&f, out, 5);
  fx_free(&f);
}

static int g_snaps;
static int snapshots_at_least(void *a) {
  return ((struct fixture *)a)->db->replicas[0]->snapshots >= g_snaps;
}
/* A later WAL index than the first snapshot's, with commits the replica
 * does not have. */
static int shadow_ahead(void *a) {
  struct db *db = ((struct fixture *)a)->db;
  struct replica *r = db->replicas[0];
  return db->index > 0 && !strcmp(r->pos.gen, db->gen) &&
         (r->pos.index < db->index ||
          (r->pos.index == db->index && r->pos.offset < db->shadow_size));
}

TEST(snapshot_after_its_segments) {
  struct fixture f;
  fx_open(&f, "order.db");
  /* One round now (the bucket starts full), the next in half an hour. */
  f.cfg.replicas[0].sync_interval = 3600 * NS_PER_SEC;
  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                 "INSERT INTO t VALUES (1);");
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  struct replica *r = f.db->replicas[0];
  CHECK_INT(r->snapshots, 1);
  CHECK_INT(f.db->index, 0);
  /* Commits in a new WAL index (after a checkpoint, a writer restarts
   * the WAL) that wait for the interval. */
  db_kick(f.db, DBJ_CHECKPOINT);
  t_run_for(100);
  w_exec(f.path, "INSERT INTO t VALUES (2);"
                 "INSERT INTO t SELECT x + 10 FROM t;"
                 "INSERT INTO t SELECT x + 100 FROM t;");
  CHECK(t_run_until(shadow_ahead, &f, 10000));
  t_run_for(200);
  CHECK(!caught_up(&f)); /* waiting for the interval */
  replica_snapshot_now(r);
  g_snaps = 2;
  CHECK(t_run_until(snapshots_at_least, &f, 10000));
  /* Written only after the segments up to the shadow's end (nothing was
   * committed since). */
  CHECK(f.db->index > 0);
  CHECK_INT(r->snap_at.index, f.db->index);
  CHECK_INT(r->pos.index, f.db->index);
  CHECK_INT(r->pos.offset, f.db->shadow_size);
  /* Again at the same index: skipped. */
  replica_snapshot_now(r);
  t_run_for(300);
  CHECK_INT(r->snapshots, 2);
  fx_close(&f);
  char out[300];
  snprintf(out, sizeof(out), "%s/restored-order.db", g_dir);
  check_restore(&f, out, 8);
  fx_free(&f);
}

int main(void) {
  if (t_db_init())
    return 1;
  RUN(backoff_and_recovery);
  RUN(close_while_failing);
  RUN(resume_after_restart);
  RUN(snapshot_after_its_segments);
  t_db_done();
  T_DONE();
}
