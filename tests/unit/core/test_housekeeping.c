/*
 * core/housekeeping.c (retention, spec 3.7) on the real loop, with a real
 * database and file replica.  A first run leaves snapshots at WAL indexes
 * 0, 1 and 2 of one generation, plus an older generation; their files are
 * then dated (mtime, which the file backend lists as creation time) 3 h,
 * 2 h and 10 min back.  With retention 1 h a second run's check must:
 *   - delete the other generation (no snapshot within retention);
 *   - keep snapshot 1 and every WAL index from 1 (a -timestamp 59 min ago
 *     restores from snapshot 1, the newest before the cutoff), delete
 *     snapshot 0 and WAL index 0;
 * and a check when every snapshot is older than retention asks for a fresh
 * snapshot and keeps the newest (everything in the window restores from
 * it), deleting what is below it.
 * A second case: an older generation whose snapshots are all older than
 * retention stays while the current generation started inside the window
 * (a -timestamp before that start restores from the older one), and goes
 * once the current one has a snapshot at or before the cutoff.
 */
#include <dirent.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/housekeeping.h"
#include "core/t_db.h"

static int g_want;
static int n_snapshots(void *a) {
  return ((struct fixture *)a)->db->replicas[0]->snapshots >= g_want;
}
static int g_want_index;
static int at_index(void *a) {
  return ((struct fixture *)a)->db->index >= (uint32_t)g_want_index &&
         caught_up(a);
}
static int hk_idle(void *a) {
  return !hk_busy(((struct fixture *)a)->db->replicas[0]->hk);
}

static const char *g_name = "ret.db";

static void gen_path(char *out, size_t len, const char *gen, const char *rest) {
  snprintf(out, len, "%s/replica-%s/generations/%s%s", g_dir, g_name, gen,
           rest);
}

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static void set_age(const char *p, int64_t age_s) {
  struct timeval tv[2];
  gettimeofday(&tv[0], NULL);
  tv[0].tv_sec -= age_s;
  tv[1] = tv[0];
  CHECK_INT(utimes(p, tv), 0);
}

/* Dates every file under dir (recursively) age_s back. */
static void age_tree(const char *dir, int64_t age_s) {
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.')
      continue;
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
    struct stat st;
    if (stat(p, &st))
      continue;
    if (S_ISDIR(st.st_mode))
      age_tree(p, age_s);
    else
      set_age(p, age_s);
  }
  closedir(d);
}

/* WAL segments of one index (wal/IIIIIIII_OOOOOOOO.wal.lz4): dates them
 * age_s back when age_s >= 0; returns how many there are. */
static int wal_files(const char *gen, uint32_t index, int64_t age_s) {
  char dir[600], prefix[16];
  gen_path(dir, sizeof(dir), gen, "/wal");
  snprintf(prefix, sizeof(prefix), "%08x_", index);
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    if (strncmp(e->d_name, prefix, 9))
      continue;
    n++;
    if (age_s >= 0) {
      char p[900];
      snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
      set_age(p, age_s);
    }
  }
  if (d)
    closedir(d);
  return n;
}

static char g_gen[GEN_LEN + 1];

/* Run 1: snapshots at indexes 0, 1, 2 (each index begun by a checkpoint
 * and a commit). */
static void first_run(void) {
  struct fixture f;
  fx_open(&f, g_name);
  f.cfg.replicas[0].retention = 0; /* nothing deleted in this run */
  w_exec(f.path, "PRAGMA journal_mode=WAL; CREATE TABLE t(x);"
                 "INSERT INTO t VALUES (1);");
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK_INT(f.db->index, 0);
  for (int i = 1; i <= 2; i++) {
    db_kick(f.db, DBJ_CHECKPOINT);
    t_run_for(100);
    w_exec(f.path, "INSERT INTO t VALUES (2);");
    g_want_index = i;
    CHECK(t_run_until(at_index, &f, 10000));
    CHECK_INT(f.db->index, i);
    g_want = i + 1;
    replica_snapshot_now(f.db->replicas[0]);
    CHECK(t_run_until(n_snapshots, &f, 10000));
  }
  snprintf(g_gen, sizeof(g_gen), "%s", f.db->gen);
  fx_close(&f);
  fx_free(&f);
}

TEST(retention_keeps_what_the_window_needs) {
  first_run();
  char p[600], q[600];
  for (int i = 0; i <= 2; i++) {
    char rest[64];
    snprintf(rest, sizeof(rest), "/snapshots/%08x.snapshot.lz4", i);
    gen_path(p, sizeof(p), g_gen, rest);
    CHECK(exists(p));
  }
  /* An older generation: a copy of this one, all of it 5 h old. */
  gen_path(p, sizeof(p), g_gen, "");
  gen_path(q, sizeof(q), "00000000000000aa", "");
  char cmd[1300];
  snprintf(cmd, sizeof(cmd), "cp -a %s %s", p, q);
  CHECK_INT(system(cmd), 0);
  age_tree(q, 5 * 3600);
  /* Snapshot and WAL ages in the current generation. */
  static const int64_t age[] = {3 * 3600, 2 * 3600, 600};
  for (int i = 0; i <= 2; i++) {
    char rest[64];
    snprintf(rest, sizeof(rest), "/snapshots/%08x.snapshot.lz4", i);
    gen_path(p, sizeof(p), g_gen, rest);
    set_age(p, age[i]);
    CHECK(wal_files(g_gen, (uint32_t)i, age[i]) > 0);
  }

  struct fixture f;
  fx_open(&f, "ret.db");
  f.cfg.replicas[0].retention = 3600 * NS_PER_SEC;
  f.cfg.replicas[0].retention_check_interval = 3600 * NS_PER_SEC;
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK_STR(f.db->gen, g_gen);
  CHECK(t_run_until(hk_idle, &f, 10000)); /* the start-up sweep */
  hk_retention_check(f.db->replicas[0]->hk);
  CHECK(hk_busy(f.db->replicas[0]->hk));
  CHECK(t_run_until(hk_idle, &f, 10000));

  CHECK(!exists(q)); /* the other generation */
  gen_path(p, sizeof(p), g_gen, "/snapshots/00000000.snapshot.lz4");
  CHECK(!exists(p));
  CHECK_INT(wal_files(g_gen, 0, -1), 0);
  CHECK(wal_files(g_gen, 1, -1) > 0);
  CHECK(wal_files(g_gen, 2, -1) > 0);
  for (int i = 1; i <= 2; i++) {
    char rest[64];
    snprintf(rest, sizeof(rest), "/snapshots/%08x.snapshot.lz4", i);
    gen_path(p, sizeof(p), g_gen, rest);
    CHECK(exists(p));
  }
  CHECK_INT(f.db->replicas[0]->snapshots, 0); /* none needed */

  /* What a -timestamp inside the window needs: snapshot 1 and the WAL
   * from index 1 on (restored up to index 1, and to the end). */
  struct backend *b = f.db->replicas[0]->b;
  struct restore_opts o = {0};
  o.has_index = 1;
  o.index = 1;
  char err[512], out[300];
  snprintf(out, sizeof(out), "%s/restored-ret-1.db", g_dir);
  CHECK_INT(restore_run_sync(b, g_gen, &o, out, err, sizeof(err)), 0);
  CHECK(query_int(out, "SELECT count(*) FROM t") >= 2);

  /* Every snapshot now older than retention (the file dates say so, the
   * replica's memory too once it lists again after a restart): the check
   * asks for a fresh snapshot (at the current WAL index, if it has none
   * yet), keeps the newest old one and deletes below it. */
  fx_close(&f);
  fx_free(&f);
  for (int i = 1; i <= 2; i++) {
    char rest[64];
    snprintf(rest, sizeof(rest), "/snapshots/%08x.snapshot.lz4", i);
    gen_path(p, sizeof(p), g_gen, rest);
    set_age(p, 2 * 3600 - i);
  }
  fx_open(&f, "ret.db");
  f.cfg.replicas[0].retention = 3600 * NS_PER_SEC;
  f.cfg.replicas[0].retention_check_interval = 3600 * NS_PER_SEC;
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK(t_run_until(hk_idle, &f, 10000));
  hk_retention_check(f.db->replicas[0]->hk);
  CHECK(t_run_until(hk_idle, &f, 10000));
  gen_path(p, sizeof(p), g_gen, "/snapshots/00000001.snapshot.lz4");
  CHECK(!exists(p));
  CHECK_INT(wal_files(g_gen, 1, -1), 0);
  gen_path(p, sizeof(p), g_gen, "/snapshots/00000002.snapshot.lz4");
  CHECK(exists(p));
  CHECK(wal_files(g_gen, 2, -1) > 0);
  if (f.db->index > 2) { /* a fresh one at the new index */
    g_want = 1;
    CHECK(t_run_until(n_snapshots, &f, 10000));
  }
  fx_close(&f);
  snprintf(out, sizeof(out), "%s/restored-ret.db", g_dir);
  check_restore(&f, out, 3);
  fx_free(&f);
}

/* Restores with -timestamp age_s ago; returns the generation chosen. */
static void restore_at(struct backend *b, int64_t age_s, const char *out,
                       char gen[GEN_LEN + 1]) {
  struct restore_opts o = {0};
  o.has_timestamp = 1;
  o.timestamp_ns = time_now_ns() - age_s * NS_PER_SEC;
  struct restore_target tg;
  char err[512];
  int rc = restore_choose_sync(&b, 1, &o, &tg, err, sizeof(err));
  if (rc)
    fprintf(stderr, "choose: %s\n", err);
  CHECK_INT(rc, 0);
  memcpy(gen, tg.gen, GEN_LEN + 1);
  rc = restore_run_sync(b, tg.gen, &o, out, err, sizeof(err));
  if (rc)
    fprintf(stderr, "restore: %s\n", err);
  CHECK_INT(rc, 0);
  CHECK(query_int(out, "SELECT count(*) FROM t") >= 1);
}

TEST(retention_keeps_an_older_generation_the_window_needs) {
  g_name = "ret2.db";
  first_run();
  char p[600], q[600], cmd[1300];
  static const char old_gen[] = "00000000000000bb";
  /* The older generation: its snapshots 5 h old, its last segments
   * 50 min (inside the 1 h window); the current generation all 10 min. */
  gen_path(p, sizeof(p), g_gen, "");
  gen_path(q, sizeof(q), old_gen, "");
  snprintf(cmd, sizeof(cmd), "cp -a %s %s", p, q);
  CHECK_INT(system(cmd), 0);
  age_tree(p, 600);
  age_tree(q, 5 * 3600);
  for (int i = 0; i <= 2; i++) {
    char rest[64];
    snprintf(rest, sizeof(rest), "/snapshots/%08x.snapshot.lz4", i);
    gen_path(p, sizeof(p), old_gen, rest);
    set_age(p, 5 * 3600 - i);
  }
  CHECK(wal_files(old_gen, 2, 50 * 60) > 0);

  struct fixture f;
  fx_open(&f, g_name);
  f.cfg.replicas[0].retention = 3600 * NS_PER_SEC;
  f.cfg.replicas[0].retention_check_interval = 3600 * NS_PER_SEC;
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK_STR(f.db->gen, g_gen);
  CHECK(t_run_until(hk_idle, &f, 10000));
  hk_retention_check(f.db->replicas[0]->hk);
  CHECK(t_run_until(hk_idle, &f, 10000));
  /* Kept from its newest snapshot: index 2. */
  gen_path(p, sizeof(p), old_gen, "/snapshots/00000002.snapshot.lz4");
  CHECK(exists(p));
  CHECK(wal_files(old_gen, 2, -1) > 0);
  gen_path(p, sizeof(p), old_gen, "/snapshots/00000001.snapshot.lz4");
  CHECK(!exists(p));
  CHECK_INT(wal_files(old_gen, 1, -1), 0);
  /* 40 min ago, before the current generation: the older one. */
  char out[300], gen[GEN_LEN + 1];
  snprintf(out, sizeof(out), "%s/restored-ret2-40m.db", g_dir);
  restore_at(f.db->replicas[0]->b, 40 * 60, out, gen);
  CHECK_STR(gen, old_gen);
  fx_close(&f);
  fx_free(&f);

  /* The current generation's first snapshot now 2 h old: it answers the
   * whole window, and the older generation goes. */
  gen_path(p, sizeof(p), g_gen, "/snapshots/00000000.snapshot.lz4");
  set_age(p, 2 * 3600);
  fx_open(&f, g_name);
  f.cfg.replicas[0].retention = 3600 * NS_PER_SEC;
  f.cfg.replicas[0].retention_check_interval = 3600 * NS_PER_SEC;
  db_start(f.db);
  CHECK(t_run_until(caught_up, &f, 10000));
  CHECK(t_run_until(hk_idle, &f, 10000));
  hk_retention_check(f.db->replicas[0]->hk);
  CHECK(t_run_until(hk_idle, &f, 10000));
  CHECK(!exists(q));
  snprintf(out, sizeof(out), "%s/restored-ret2-40m-b.db", g_dir);
  restore_at(f.db->replicas[0]->b, 40 * 60, out, gen);
  CHECK_STR(gen, g_gen);
  fx_close(&f);
  fx_free(&f);
}

int main(void) {
  if (t_db_init())
    return 1;
  RUN(retention_keeps_what_the_window_needs);
  RUN(retention_keeps_an_older_generation_the_window_needs);
  t_db_done();
  T_DONE();
}
