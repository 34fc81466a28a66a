/*
 * The replication engine without the loop: a real SQLite writer (its own
 * connection, autocheckpoint on, sometimes wal_checkpoint(TRUNCATE)) commits
 * while the engine copies frames and checkpoints; then the snapshot plus
 * every shadow WAL index is replayed into a fresh file, which must equal
 * the writer's database row for row.
 */
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "core/engine.h"
#include "base/err.h"
#include "format/lz4frame.h"
#include "core/resync.h"
#include "core/shadow.h"
#include "base/util.h"
#include "format/pagemap.h"
#include "t.h"

static char dir[256];

static void w_exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  int rc;
  while ((rc = sqlite3_exec(db, sql, NULL, NULL, &err)) == SQLITE_BUSY) {
    sqlite3_free(err);
    err = NULL;
    usleep(1000);
  }
  if (rc != SQLITE_OK) {
    fprintf(stderr, "writer: %s: %s\n", sql, err);
    exit(1);
  }
}

static int64_t count(const char *path, const char *sql) {
  sqlite3 *db;
  sqlite3_open(path, &db);
  sqlite3_stmt *st;
  int64_t n = -1;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/* Replays snapshot + shadow indexes [from, to] into out. */
static int replay(struct engine *e, const char *snap, uint32_t from,
                  uint32_t to, const char *out) {
  int in = open(snap, O_RDONLY);
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int64_t n;
  if (lz4_decompress_fd(in, fd, &n))
    return -1;
  close(in);
  close(fd);
  char *wal = xasprintf("%s-wal", out);
  for (uint32_t i = from; i <= to; i++) {
    char *src = shadow_wal_path(e->meta, e->gen, i);
    struct buf b;
    if (file_read_all(src, 0, &b)) {
      fprintf(stderr, "missing shadow %s\n", src);
      return -1;
    }
    int w = open(wal, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    write_full(w, b.data, b.len);
    close(w);
    buf_destroy(&b);
    free(src);
    sqlite3 *db;
    sqlite3_open(out, &db);
    sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL);
    sqlite3_close(db);
  }
  free(wal);
  return 0;
}

TEST(engine_copies_every_commit_across_restarts) {
  char *path = xasprintf("%s/app.db", dir);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=100;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");

  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  cfg.min_checkpoint_page_count = 50;
  struct engine e;
  engine_init_struct(&e, &cfg);
  e.ckpt_min_interval_ns = 0;
  CHECK_INT(engine_open(&e), 0);
  CHECK(gen_is_valid(e.gen));

  char *snap = xasprintf("%s/snap.lz4", dir);
  int sfd = open(snap, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int64_t slen;
  char sgen[GEN_LEN + 1];
  uint32_t sidx;
  CHECK_INT(engine_snapshot(&e, sfd, &slen, sgen, &sidx), 0);
  close(sfd);
  CHECK_INT(sidx, 0);

  /* An application checkpoint holds the checkpoint lock (our
   * non-blocking retake after a checkpoint of ours lost the race): a
   * snapshot must not read the database file meanwhile, the checkpoint
   * may be copying pages into it (a torn snapshot). */
  {
    char *shm = xasprintf("%s-shm", path);
    char *snap2 = xasprintf("%s/snap2.lz4", dir);
    int afd = open(shm, O_RDWR);
    int bfd = open(snap2, O_RDWR | O_CREAT | O_TRUNC, 0600);
    int64_t blen;
    char bgen[GEN_LEN + 1];
    uint32_t bidx;
    engine_hold_checkpoints(&e, 0);
    struct flock fl;
    memset(&fl, 0, sizeof(fl));
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 121; /* WAL_CKPT_LOCK */
    fl.l_len = 1;
    CHECK(afd >= 0 && bfd >= 0 && fcntl(afd, F_OFD_SETLK, &fl) == 0);
    CHECK_INT(engine_snapshot(&e, bfd, &blen, bgen, &bidx), ERR_BUSY);
    fl.l_type = F_UNLCK;
    CHECK(fcntl(afd, F_OFD_SETLK, &fl) == 0);
    CHECK_INT(engine_snapshot(&e, bfd, &blen, bgen, &bidx), 0);
    CHECK(e.ckpt_held);
    close(afd);
    close(bfd);
    unlink(snap2);
    free(snap2);
    free(shm);
  }

  int ckpts = 0;
  for (int round = 0; round < 60; round++) {
    for (int i = 0; i < 40; i++)
      w_exec(w, "INSERT INTO t(v) VALUES(randomblob(300))");
    if (round % 13 == 5)
      sqlite3_wal_checkpoint_v2(w, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                NULL);
    int ng = 0;
    CHECK_INT(engine_sync(&e, &ng), 0);
    CHECK_INT(ng, 0);
    if (engine_should_checkpoint(&e, time_mono_ns(), 0)) {
      int rc = engine_checkpoint(&e, 0);
      CHECK(rc == 0 || rc == ERR_BUSY);
      ckpts += rc == 0;
    }
  }
  int ng = 0;
  CHECK_INT(engine_sync(&e, &ng), 0);
  CHECK(ckpts > 0);
  CHECK(e.index > 0); /* the WAL restarted at least once */
  char *out = xasprintf("%s/restored.db", dir);
  CHECK_INT(replay(&e, snap, 0, e.index, out), 0);
  CHECK_INT(count(out, "SELECT count(*) FROM t"), 60 * 40);
  CHECK_INT(count(out, "SELECT count(*) FROM t"),
            count(path, "SELECT count(*) FROM t"));
  CHECK_INT(count(out, "SELECT sum(length(v)) FROM t"),
            count(path, "SELECT sum(length(v)) FROM t"));
  printf("  %u WAL indexes, %d checkpoints\n", e.index + 1, ckpts);
  CHECK_INT(engine_close(&e), 0);

  /* A restart of the engine continues the same generation. */
  char gen[GEN_LEN + 1];
  memcpy(gen, e.gen, sizeof(gen));
  uint32_t idx = e.index;
  engine_destroy(&e);
  engine_init_struct(&e, &cfg);
  CHECK_INT(engine_open(&e), 0);
  CHECK_STR(e.gen, gen);
  /* Same index, or the next one when the clean stop truncated the WAL (the
   * writer here is in our own process, so it does not count as another
   * process holding the database open). */
  CHECK(e.index == idx || e.index == idx + 1);
  engine_close(&e);
  engine_destroy(&e);
  sqlite3_close(w);
  free(out);
  free(snap);
  free(path);
}

/* A WAL restart the engine has not seen yet, found by a sync under the
 * write lock (validation copy, write-locked checkpoint): the pin must not
 * be advanced there (BEGIN on the connection holding the write lock failed,
 * and its cleanup's "ROLLBACK: cannot rollback - no transaction is active"
 * hid the cause). */
TEST(sync_under_write_lock_follows_a_restart) {
  char *path = xasprintf("%s/restart.db", dir);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  struct engine e;
  engine_init_struct(&e, &cfg);
  e.ckpt_min_interval_ns = 0;
  CHECK_INT(engine_open(&e), 0);
  for (int round = 0; round < 2; round++) {
    for (int i = 0; i < 20; i++)
      w_exec(w, "INSERT INTO t(v) VALUES(randomblob(100))");
    int ng = 0;
    CHECK_INT(engine_sync(&e, &ng), 0);
    /* Idle checkpoint: everything checkpointed, the pin on read-mark 0. */
    CHECK_INT(engine_checkpoint(&e, 1), 0);
    uint32_t index = e.index;
    w_exec(w, "INSERT INTO t(v) VALUES('after restart')"); /* restarts */
    char *out = xasprintf("%s/restart-copy%d.db", dir, round);
    struct pos at;
    int rc = engine_validation_copy(&e, out, &at);
    if (rc)
      fprintf(stderr, "  validation copy: %s\n", e.m->err);
    CHECK_INT(rc, 0);
    CHECK_INT(e.index, index + 1);
    CHECK_INT(at.index, index + 1);
    CHECK_INT(count(out, "SELECT count(*) FROM t"),
              count(path, "SELECT count(*) FROM t"));
    CHECK(e.pin >= 0);
    unlink(out);
    free(out);
  }
  engine_close(&e);
  engine_destroy(&e);
  sqlite3_close(w);
  free(path);
}

/* engine_restart_soon (a snapshot due at the start of the next WAL index):
 * a WAL far below the checkpoint threshold is checkpointed anyway, under
 * the write lock when a plain checkpoint cannot cover it (an application
 * reader behind the end), the request stays until a checkpoint has covered
 * everything, and the next commit starts a new index. */
TEST(restart_soon_ends_a_short_lifetime) {
  char *path = xasprintf("%s/restart-soon.db", dir);
  sqlite3 *w, *rd;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  struct engine e;
  engine_init_struct(&e, &cfg);
  e.ckpt_min_interval_ns = 0;
  CHECK_INT(engine_open(&e), 0);
  for (int i = 0; i < 20; i++)
    w_exec(w, "INSERT INTO t(v) VALUES(randomblob(100))");
  int ng = 0;
  CHECK_INT(engine_sync(&e, &ng), 0);
  uint32_t index = e.index;
  /* An application reader in the middle of the lifetime. */
  sqlite3_open(path, &rd);
  w_exec(rd, "BEGIN; SELECT count(*) FROM t");
  for (int i = 0; i < 20; i++)
    w_exec(w, "INSERT INTO t(v) VALUES(randomblob(100))");
  CHECK_INT(engine_sync(&e, &ng), 0);
  CHECK(!engine_should_checkpoint(&e, time_mono_ns(), 0)); /* 40 frames */
  engine_restart_soon(&e);
  CHECK(engine_should_checkpoint(&e, time_mono_ns(), 0));
  e.lock_held_ns = 0;
  engine_checkpoint(&e, 0);
  CHECK(e.lock_held_ns > 0);     /* the write-locked path, for 40 frames */
  CHECK_INT(e.restart_asked, 1); /* the reader kept frames out of the file */
  CHECK(e.pin >= 0);
  /* Not for ever: a reader holding the WAL would have us lock it again
   * and again. */
  CHECK(!engine_should_checkpoint(&e, time_mono_ns() + ENGINE_RESTART_WAIT_NS,
                                  0));
  w_exec(rd, "COMMIT");
  sqlite3_close(rd);
  CHECK(engine_should_checkpoint(&e, time_mono_ns(), 0));
  CHECK_INT(engine_checkpoint(&e, 0), 0);
  CHECK_INT(e.restart_asked, 0);
  CHECK(!engine_should_checkpoint(&e, time_mono_ns(), 0));
  w_exec(w, "INSERT INTO t(v) VALUES('after restart')"); /* restarts */
  CHECK_INT(engine_sync(&e, &ng), 0);
  CHECK_INT(ng, 0);
  CHECK_INT(e.index, index + 1);
  engine_close(&e);
  engine_destroy(&e);
  sqlite3_close(w);
  free(path);
}

/* The clean-stop record: written, read back once (then gone), and a
 * damaged one is no record at all. */
TEST(stop_record_round_trip) {
  char *meta = xasprintf("%s/meta-stop", dir);
  CHECK_INT(mkdir_p(meta, 0700), 0);
  struct shadow_stop w, r;
  memset(&w, 0, sizeof(w));
  gen_new(w.gen);
  w.index = 0x2a;
  w.size = 4152;
  w.dev = 2049;
  w.ino = 123456789012ULL;
  w.db_size = 8192;
  w.mtime_ns = 1764581234123456789LL;
  w.ctime_ns = 1764581234123456790LL;
  CHECK_INT(shadow_write_stop(meta, &w), 0);
  CHECK_INT(shadow_take_stop(meta, &r), 0);
  CHECK_STR(r.gen, w.gen);
  CHECK_INT(r.index, w.index);
  CHECK_INT(r.size, w.size);
  CHECK(r.dev == w.dev && r.ino == w.ino);
  CHECK_INT(r.db_size, w.db_size);
  CHECK(r.mtime_ns == w.mtime_ns && r.ctime_ns == w.ctime_ns);
  CHECK_INT(shadow_take_stop(meta, &r), ERR_NOT_FOUND); /* taken */
  char *path = xasprintf("%s/%s", meta, SHADOW_STOP_FILE);
  CHECK_INT(file_write_atomic(path, "v1 nothex 1 2 3\n", 16, 0600), 0);
  CHECK_INT(shadow_take_stop(meta, &r), ERR_NOT_FOUND);
  CHECK(access(path, F_OK) != 0); /* removed even so */
  free(path);
  free(meta);
}

/* A snapshot taken after a checkpoint an application reader stopped
 * half-way (seen as e2e/age_encryption's torn snapshots: page 1 said 48
 * pages, the file held 47): such a checkpoint copies page 1 of a commit
 * that grew the database but not the new last page, rewritten by a later
 * commit past the reader.  The database file alone is then no database;
 * the snapshot must still be one, on its own, with every row of the
 * shadow's end. */
TEST(snapshot_after_a_partial_checkpoint_is_consistent) {
  char *path = xasprintf("%s/partial.db", dir);
  sqlite3 *w, *r;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);"
            "INSERT INTO t(v) VALUES(randomblob(3000))");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  cfg.min_checkpoint_page_count = 1;
  struct engine e;
  engine_init_struct(&e, &cfg);
  e.ckpt_min_interval_ns = 0;
  CHECK_INT(engine_open(&e), 0);
  int ng = 0;
  CHECK_INT(engine_sync(&e, &ng), 0);
  CHECK_INT(engine_checkpoint(&e, 1), 0); /* the file holds everything */
  for (int i = 0; i < 3; i++) {
    /* A: grows the database (page 1 records the size); a reader there. */
    w_exec(w, "INSERT INTO t(v) VALUES(randomblob(3000))");
    sqlite3_open(path, &r);
    w_exec(r, "BEGIN; SELECT count(*) FROM t");
    /* B: rewrites only the new last page. */
    w_exec(w, "UPDATE t SET v = randomblob(3000) WHERE id = (SELECT max(id) "
              "FROM t)");
    CHECK_INT(engine_sync(&e, &ng), 0);
    int rc = engine_checkpoint(&e, 0); /* stopped by the reader */
    CHECK(rc == 0 || rc == ERR_BUSY);
    w_exec(r, "COMMIT");
    sqlite3_close(r);
  }
  struct stat sb;
  CHECK_INT(stat(path, &sb), 0);
  int64_t file_pages = sb.st_size / 4096;
  char *snap = xasprintf("%s/partial.lz4", dir);
  char *out = xasprintf("%s/partial-snap.db", dir);
  int sfd = open(snap, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int64_t slen;
  char sgen[GEN_LEN + 1];
  uint32_t sidx;
  int rc = engine_snapshot(&e, sfd, &slen, sgen, &sidx);
  if (rc)
    fprintf(stderr, "  snapshot: %s\n", e.m->err);
  CHECK_INT(rc, 0);
  close(sfd);
  int in = open(snap, O_RDONLY);
  int fd = open(out, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int64_t n = 0;
  CHECK_INT(lz4_decompress_fd(in, fd, &n), 0);
  close(in);
  close(fd);
  printf("  database file %lld pages, snapshot %lld pages\n",
         (long long)file_pages, (long long)(n / 4096));
  CHECK(file_pages < n / 4096); /* the file alone was torn */
  sqlite3 *c;
  sqlite3_open(out, &c);
  char ic[64] = "";
  sqlite3_stmt *st;
  if (sqlite3_prepare_v2(c, "PRAGMA integrity_check", -1, &st, NULL) ==
          SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    snprintf(ic, sizeof(ic), "%s", (const char *)sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(c);
  CHECK_STR(ic, "ok");
  CHECK_INT(count(out, "SELECT count(*) FROM t"),
            count(path, "SELECT count(*) FROM t"));
  CHECK_INT(count(out, "SELECT sum(length(v)) FROM t"),
            count(path, "SELECT sum(length(v)) FROM t"));
  /* And replaying the index from offset 0 onto it still gives the end. */
  char *out2 = xasprintf("%s/partial-replay.db", dir);
  CHECK_INT(replay(&e, snap, e.index, e.index, out2), 0);
  CHECK_INT(count(out2, "SELECT count(*) FROM t"),
            count(path, "SELECT count(*) FROM t"));
  engine_close(&e);
  engine_destroy(&e);
  sqlite3_close(w);
  free(out2);
  free(out);
  free(snap);
  free(path);
}

/* A commit landing while the engine goes to sleep, after its last copy
 * and before it takes the probe of the -wal that a wake compares (the
 * hook runs there): the sleep must not take that commit for seen.  It
 * stays awake with the commit copied, or sleeps with a probe that says
 * the -wal changed.  (Once, under load: the last commit before a quiet
 * period was in no replica, not even after a clean stop.) */
static sqlite3 *hook_w;
static int hook_runs;
static void commit_in_sleep(void *arg) {
  (void)arg;
  if (hook_runs++ == 0)
    w_exec(hook_w, "INSERT INTO t(v) VALUES('while going to sleep')");
}

TEST(sleep_sees_a_commit_during_the_sleep) {
  char *path = xasprintf("%s/sleep.db", dir);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  struct engine e;
  engine_init_struct(&e, &cfg);
  e.ckpt_min_interval_ns = 0;
  CHECK_INT(engine_open(&e), 0);
  char *snap = xasprintf("%s/sleep-snap.lz4", dir);
  int sfd = open(snap, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int64_t slen;
  char sgen[GEN_LEN + 1];
  uint32_t sidx;
  CHECK_INT(engine_snapshot(&e, sfd, &slen, sgen, &sidx), 0);
  close(sfd);
  for (int i = 0; i < 5; i++)
    w_exec(w, "INSERT INTO t(v) VALUES(randomblob(100))");
  int ng = 0;
  CHECK_INT(engine_sync(&e, &ng), 0);
  hook_w = w;
  hook_runs = 0;
  e.test_sleep_hook = commit_in_sleep;
  int rc = ERR_BUSY;
  for (int tries = 0; tries < 20 && rc == ERR_BUSY; tries++)
    rc = engine_sleep(&e, ENGINE_LIGHT);
  CHECK(hook_runs >= 1);
  char *out = xasprintf("%s/sleep-restored.db", dir);
  CHECK_INT(rc, 0);
  CHECK(e.asleep);
  if (engine_wal_changed(&e)) {
    CHECK_INT(engine_open(&e), 0); /* the wake copies it */
    CHECK_INT(engine_sync(&e, &ng), 0);
  }
  /* Else it was copied before it slept: the shadow has it, no wake due. */
  CHECK_INT(replay(&e, snap, 0, e.index, out), 0);
  CHECK_INT(
      count(out, "SELECT count(*) FROM t WHERE v = 'while going to sleep'"), 1);
  CHECK_INT(count(out, "SELECT count(*) FROM t"),
            count(path, "SELECT count(*) FROM t"));
  e.test_sleep_hook = NULL;
  engine_close(&e);
  engine_destroy(&e);
  sqlite3_close(w);
  free(out);
  free(snap);
  free(path);
}

/* Start straight into sleep: after a clean stop, an unchanged database is
 * proven asleep without a connection (and its wake check sees a later
 * commit); a commit kept in the WAL, or a TRUNCATE checkpoint into the
 * database file, while "stopped" is never proven caught up. */
TEST(start_asleep_only_when_unchanged) {
  char *path = xasprintf("%s/start.db", dir);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  struct engine e;
  engine_init_struct(&e, &cfg);
  CHECK_INT(engine_open(&e), 0);
  for (int i = 0; i < 5; i++)
    w_exec(w, "INSERT INTO t(v) VALUES(randomblob(100))");
  sqlite3_close(w); /* the engine closes last: the stop truncates the WAL */
  int ng = 0;
  CHECK_INT(engine_sync(&e, &ng), 0);
  char gen[GEN_LEN + 1];
  memcpy(gen, e.gen, sizeof(gen));
  uint32_t index = e.index;
  int64_t size = e.shadow_size;
  CHECK_INT(engine_close(&e), 0);
  engine_destroy(&e);
  char why[200];

  /* Unchanged: asleep at once, at the stop's position, the record kept. */
  struct engine a;
  engine_init_struct(&a, &cfg);
  CHECK_INT(engine_start_asleep(&a, why, sizeof(why)), 0);
  CHECK_INT(a.asleep, ENGINE_DEEP);
  CHECK_STR(a.gen, gen);
  CHECK_INT(a.index, index);
  CHECK_INT(a.shadow_size, size);
  CHECK(a.conn[0] == NULL && a.db_fd < 0 && a.wal_fd < 0 && a.shm_fd < 0);
  CHECK_INT(engine_wal_changed(&a), 0);
  struct shadow_stop rec;
  char *meta = xstrdup(a.meta);
  CHECK_INT(shadow_read_stop(meta, &rec), 0);

  /* A commit kept in the WAL (the connection stays open). */
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA wal_autocheckpoint=0;"
            "INSERT INTO t(v) VALUES('written while stopped')");
  CHECK_INT(engine_wal_changed(&a), 1); /* the sleeper wakes for it */
  struct engine b;
  engine_init_struct(&b, &cfg);
  CHECK_INT(engine_start_asleep(&b, why, sizeof(why)), 1);
  CHECK(strstr(why, "wal written") != NULL);
  engine_destroy(&b);

  /* The application's TRUNCATE checkpoint: WAL empty, database changed. */
  w_exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
  struct stat sb;
  CHECK(stat(a.wal_path, &sb) == 0 && sb.st_size == 0);
  engine_init_struct(&b, &cfg);
  CHECK_INT(engine_start_asleep(&b, why, sizeof(why)), 1);
  CHECK(strstr(why, "database file written") != NULL);
  engine_destroy(&b);
  CHECK_INT(engine_wal_changed(&a), 1);

  /* The wake ships it in the same generation. */
  CHECK_INT(engine_open(&a), 0);
  CHECK_STR(a.gen, gen);
  CHECK(a.index > index);
  CHECK_INT(engine_sync(&a, &ng), 0);
  CHECK_INT(ng, 0);
  engine_close(&a);
  engine_destroy(&a);
  sqlite3_close(w);
  free(meta);
  free(path);
}

static int64_t file_size(const char *path) {
  struct stat sb;
  return stat(path, &sb) ? -1 : (int64_t)sb.st_size;
}

static int64_t file_mtime(const char *path) {
  struct stat sb;
  if (stat(path, &sb))
    return -1;
  return (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
}

static int sleep_now(struct engine *e, int how) {
  int rc = ERR_BUSY;
  for (int tries = 0; tries < 50 && rc == ERR_BUSY; tries++)
    if ((rc = engine_sleep(e, how)) == ERR_BUSY)
      usleep(20000);
  return rc;
}

/* The stop of a sleeper (engine_close_asleep) needs no wake: with the
 * application's connection open the WAL is left as it is; with none, it
 * is truncated without touching the database file, light or deep, so the
 * next start continues the generation at the next index with no resync,
 * and the application's own first open recovers nothing. */
TEST(stop_asleep_truncates_without_waking) {
  char *path = xasprintf("%s/stopasleep.db", dir);
  char *wal = xasprintf("%s-wal", path);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  w_exec(w, "INSERT INTO t(v) VALUES('one')");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  char gen[GEN_LEN + 1];
  uint32_t index = 0;
  for (int round = 0; round < 3; round++) {
    /* 0: the application has it open; 1: alone, light; 2: alone, deep. */
    struct engine e;
    engine_init_struct(&e, &cfg);
    e.ckpt_min_interval_ns = 0;
    CHECK_INT(engine_open(&e), 0);
    if (round > 0) {
      CHECK_STR(e.gen, gen);
      /* Round 0's WAL was left: the same lifetime; round 1's truncated:
       * the next index, continued from the record. */
      CHECK_INT(e.index, round == 1 ? index : index + 1);
      CHECK_INT(e.stats.resyncs, 0);
    }
    memcpy(gen, e.gen, sizeof(gen));
    char row[64];
    snprintf(row, sizeof(row), "INSERT INTO t(v) VALUES('round %d')", round);
    w_exec(w, row);
    if (round > 0) {
      sqlite3_close(w);
      w = NULL;
    }
    int ng = 0;
    CHECK_INT(engine_sync(&e, &ng), 0);
    CHECK_INT(sleep_now(&e, ENGINE_LIGHT), 0);
    if (round == 2)
      engine_deepen(&e);
    CHECK(file_size(wal) > 32); /* a sleep leaves the frames */
    int64_t mtime = file_mtime(path);
    CHECK(!engine_wal_changed(&e));
    CHECK_INT(engine_close_asleep(&e, 0), 0);
    CHECK_INT(e.wal_fd, -1);
    CHECK_INT(e.shm_fd, -1);
    CHECK_INT(e.db_fd, -1);
    if (round == 0)
      CHECK(file_size(wal) > 32); /* not alone: left as it is */
    else
      CHECK_INT(file_size(wal), 0);
    CHECK(file_mtime(path) == mtime); /* nothing checkpointed again */
    index = e.index;
    engine_destroy(&e);
    if (!w) {
      /* The application's first open: nothing to recover, the file stays. */
      sqlite3_open(path, &w);
      sqlite3_busy_timeout(w, 5000);
      CHECK_INT(count(path, "SELECT count(*) FROM t"), round + 2);
      CHECK(file_mtime(path) == mtime);
    }
  }
  sqlite3_close(w);
  free(wal);
  free(path);
}

/* A database going dormant (engine_close_asleep with keep_wal) leaves the
 * WAL and the database file exactly as they are (no truncating
 * checkpoint, which could write frames into the file and leave a record
 * that no longer describes it), and the record it leaves proves the next
 * start asleep. */
TEST(dormant_close_keeps_the_wal) {
  char *path = xasprintf("%s/dormantclose.db", dir);
  char *wal = xasprintf("%s-wal", path);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  struct engine e;
  engine_init_struct(&e, &cfg);
  e.ckpt_min_interval_ns = 0;
  CHECK_INT(engine_open(&e), 0);
  w_exec(w, "INSERT INTO t(v) VALUES('one')");
  sqlite3_close(w);
  int ng = 0;
  CHECK_INT(engine_sync(&e, &ng), 0);
  CHECK_INT(sleep_now(&e, ENGINE_LIGHT), 0);
  engine_deepen(&e);
  int64_t wsize = file_size(wal), mtime = file_mtime(path);
  CHECK(wsize > 32);
  CHECK_INT(engine_close_asleep(&e, 1), 0);
  CHECK_INT(file_size(wal), wsize); /* left as it is */
  CHECK(file_mtime(path) == mtime);
  engine_destroy(&e);
  char why[200];
  struct engine a;
  engine_init_struct(&a, &cfg);
  CHECK_INT(engine_start_asleep(&a, why, sizeof(why)), 0);
  /* Asleep again, the same close leaves the same record: no rewrite. */
  struct shadow_stop r1, r2;
  CHECK_INT(shadow_read_stop(a.meta, &r1), 0);
  CHECK_INT(engine_close_asleep(&a, 1), 0);
  CHECK_INT(shadow_read_stop(a.meta, &r2), 0);
  CHECK(r1.mtime_ns == r2.mtime_ns && r1.size == r2.size &&
        r1.index == r2.index);
  CHECK_INT(file_size(wal), wsize);
  engine_destroy(&a);
  free(wal);
  free(path);
}

/* The idle stub (engine_pack): a deep sleeper packs to well under half
 * its struct and unpacks byte-identical; woken after the application
 * wrote more than its autocheckpoint threshold, with its own TRUNCATE
 * checkpoints, while sluice held nothing, the wake continues the same
 * generation (no new one: the changed pages are shipped) and the shadow
 * restores every row. */
TEST(stub_pack_wake_after_truncate_checkpoints) {
  char *path = xasprintf("%s/stub.db", dir);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  struct engine *e = xmalloc(sizeof(*e));
  engine_init_struct(e, &cfg);
  e->ckpt_min_interval_ns = 0;
  CHECK_INT(engine_open(e), 0);
  char *snap = xasprintf("%s/stub-snap.lz4", dir);
  int sfd = open(snap, O_RDWR | O_CREAT | O_TRUNC, 0600);
  int64_t slen;
  char sgen[GEN_LEN + 1];
  uint32_t sidx;
  CHECK_INT(engine_snapshot(e, sfd, &slen, sgen, &sidx), 0);
  close(sfd);
  for (int i = 0; i < 20; i++)
    w_exec(w, "INSERT INTO t(v) VALUES(randomblob(100))");
  int ng = 0;
  CHECK_INT(engine_sync(e, &ng), 0);
  CHECK_INT(sleep_now(e, ENGINE_LIGHT), 0);
  engine_deepen(e);
  engine_drop_msgs(e);
  CHECK_INT(e->asleep, ENGINE_DEEP);
  char gen[GEN_LEN + 1];
  memcpy(gen, e->gen, sizeof(gen));
  uint32_t index = e->index;
  struct engine *copy = xmalloc(sizeof(*copy));
  memcpy(copy, e, sizeof(*e));
  size_t len = 0;
  uint8_t *stub = engine_pack(e, &len);
  e = NULL;
  CHECK(len > 0 && len < sizeof(struct engine) / 2);
  printf("  stub: %zu of %zu bytes\n", len, sizeof(struct engine));

  /* Asleep in the stub: a burst past the autocheckpoint threshold (1000
   * pages), two TRUNCATE checkpoints of the application's own. */
  for (int round = 0; round < 2; round++) {
    w_exec(w, "BEGIN");
    for (int i = 0; i < 700; i++)
      w_exec(w, "INSERT INTO t(v) VALUES(randomblob(3000))");
    w_exec(w, "COMMIT");
    w_exec(w, "PRAGMA wal_checkpoint(TRUNCATE)");
  }
  w_exec(w, "INSERT INTO t(v) VALUES('after the checkpoints')");

  e = engine_unpack(stub);
  free(stub);
  CHECK(memcmp(e, copy, sizeof(*e)) == 0);
  free(copy);
  CHECK_INT(engine_wal_changed(e), 1);
  engine_keep_msgs(e);          /* as every job does first */
  CHECK_INT(engine_open(e), 0); /* the wake */
  CHECK_STR(e->gen, gen);
  CHECK(e->index > index);
  CHECK_INT(engine_sync(e, &ng), 0);
  CHECK_INT(ng, 0);
  CHECK_STR(e->gen, sgen);
  char *out = xasprintf("%s/stub-restored.db", dir);
  CHECK_INT(replay(e, snap, sidx, e->index, out), 0);
  CHECK_INT(count(out, "SELECT count(*) FROM t"),
            count(path, "SELECT count(*) FROM t"));
  CHECK_INT(count(out, "SELECT count(*) FROM t"), 20 + 1400 + 1);
  CHECK_INT(count(out, "SELECT count(*) FROM pragma_integrity_check "
                       "WHERE integrity_check = 'ok'"),
            1);
  engine_close(e);
  engine_destroy(e);
  free(e);
  sqlite3_close(w);
  free(out);
  free(snap);
  free(path);
}

/* Where the saved page map stands: (index, offset), or index -1. */
static void saved_map(struct engine *e, int64_t *index, int64_t *offset) {
  char *path = path_join(e->meta, RESYNC_MAP_FILE);
  struct buf b;
  struct pagemap m;
  char err[160];
  *index = *offset = -1;
  pagemap_init(&m, 0);
  if (!file_read_all(path, 0, &b)) {
    if (!pagemap_decode(b.data, b.len, &m, err, sizeof(err))) {
      *index = m.index;
      *offset = m.offset;
    }
    buf_destroy(&b);
  }
  pagemap_destroy(&m);
  free(path);
}

/* The periodic page-map save (resync_maintain) waits for save_period_ns
 * after the last one however much was copied; a close saves at once. */
TEST(page_map_saves_are_rate_limited) {
  char *path = xasprintf("%s/pagemap.db", dir);
  sqlite3 *w;
  sqlite3_open(path, &w);
  sqlite3_busy_timeout(w, 5000);
  w_exec(w, "PRAGMA journal_mode=wal; PRAGMA wal_autocheckpoint=0;"
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)");
  struct db_config cfg;
  memset(&cfg, 0, sizeof(cfg));
  cfg.path = path;
  struct engine e;
  engine_init_struct(&e, &cfg);
  CHECK_INT(engine_open(&e), 0);
  CHECK_INT(e.rs.save_period_ns, RESYNC_SAVE_PERIOD_NS);
  int ng = 0;
  CHECK_INT(engine_sync(&e, &ng), 0); /* builds the map and saves it */
  int64_t idx, off, first;
  saved_map(&e, &idx, &off);
  CHECK_INT(idx, e.index);
  CHECK_INT(off, e.shadow_size);
  first = off;
  e.rs.save_period_ns = 3600 * NS_PER_SEC;
  for (int round = 0; round < 3; round++) {
    /* 2 MiB of WAL, twice the byte threshold. */
    for (int i = 0; i < 500; i++)
      w_exec(w, "INSERT INTO t(v) VALUES(randomblob(4000))");
    CHECK_INT(engine_sync(&e, &ng), 0);
    CHECK_INT(ng, 0);
    CHECK(e.rs.valid);
    CHECK(round == 1 ? e.rs.unsaved == 0 : e.rs.unsaved >= (1 << 20));
    saved_map(&e, &idx, &off);
    if (round == 0) {
      CHECK_INT(off, first); /* within the period: not saved */
      e.rs.save_period_ns = 0;
    } else if (round == 1) {
      CHECK_INT(idx, e.index); /* the period passed: saved */
      CHECK_INT(off, e.shadow_size);
      CHECK(off > first);
      first = off;
      e.rs.save_period_ns = 3600 * NS_PER_SEC;
    } else {
      CHECK_INT(off, first);
    }
  }
  int64_t end = e.shadow_size;
  uint32_t end_index = e.index;
  CHECK_INT(engine_close(&e), 0);
  saved_map(&e, &idx, &off); /* a stop always saves */
  CHECK_INT(idx, end_index);
  CHECK_INT(off, end);
  engine_destroy(&e);
  sqlite3_close(w);
  free(path);
}

int main(void) {
  engine_global_init();
  snprintf(dir, sizeof(dir), "/tmp/sluice-engine.XXXXXX");
  if (!mkdtemp(dir))
    return 1;
  RUN(engine_copies_every_commit_across_restarts);
  RUN(stop_record_round_trip);
  RUN(snapshot_after_a_partial_checkpoint_is_consistent);
  RUN(sync_under_write_lock_follows_a_restart);
  RUN(restart_soon_ends_a_short_lifetime);
  RUN(sleep_sees_a_commit_during_the_sleep);
  RUN(start_asleep_only_when_unchanged);
  RUN(stop_asleep_truncates_without_waking);
  RUN(dormant_close_keeps_the_wal);
  RUN(stub_pack_wake_after_truncate_checkpoints);
  RUN(page_map_saves_are_rate_limited);
  rm_rf(dir);
  T_DONE();
}
