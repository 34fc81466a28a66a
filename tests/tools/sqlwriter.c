/*
 * sqlwriter: a real SQLite application for tests and benchmarks.  Commits
 * transactions into t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT) as fast as
 * it can (or at -rate), with the application's own checkpoint habits, and
 * prints what it committed.
 *
 *   sqlwriter -db PATH [-n TX | -duration SEC] [-rows K] [-size BYTES]
 *             [-sync off|normal|full] [-autocheckpoint PAGES]
 *             [-truncate-every TX] [-rate TX_PER_SEC] [-busy MS]
 *             [-update-every TX] [-delete-every TX]
 *             [-checkpoint-every TX -checkpoint-mode passive|full|restart|
 *              truncate] [-journal-size-limit BYTES] [-vacuum-every TX]
 *
 * -truncate-every TX is -checkpoint-every TX with the TRUNCATE mode.
 */
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) {
  (void)s;
  stop = 1;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(sqlite3 *db, const char *what) {
  fprintf(stderr, "sqlwriter: %s: %s\n", what, db ? sqlite3_errmsg(db) : "");
  exit(1);
}

static void exec(sqlite3 *db, const char *sql) {
  char *err = NULL;
  while (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK) {
    if (sqlite3_errcode(db) == SQLITE_BUSY) { /* beyond busy_timeout */
      sqlite3_free(err);
      err = NULL;
      usleep(1000);
      continue;
    }
    fprintf(stderr, "sqlwriter: %s: %s\n", sql, err ? err : "?");
    exit(1);
  }
}

int main(int argc, char **argv) {
  const char *path = NULL, *sync = "normal";
  long n = -1, rows = 1, size = 100, autockpt = 1000, trunc_every = 0,
       busy = 5000, upd_every = 0, del_every = 0, jsl = -2, vac_every = 0;
  int ckpt_mode = SQLITE_CHECKPOINT_TRUNCATE;
  double duration = -1, rate = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "-db"))
      path = v;
    else if (!strcmp(k, "-n"))
      n = atol(v);
    else if (!strcmp(k, "-duration"))
      duration = atof(v);
    else if (!strcmp(k, "-rows"))
      rows = atol(v);
    else if (!strcmp(k, "-size"))
      size = atol(v);
    else if (!strcmp(k, "-sync"))
      sync = v;
    else if (!strcmp(k, "-autocheckpoint"))
      autockpt = atol(v);
    else if (!strcmp(k, "-truncate-every") || !strcmp(k, "-checkpoint-every"))
      trunc_every = atol(v);
    else if (!strcmp(k, "-checkpoint-mode")) {
      if (!strcmp(v, "passive"))
        ckpt_mode = SQLITE_CHECKPOINT_PASSIVE;
      else if (!strcmp(v, "full"))
        ckpt_mode = SQLITE_CHECKPOINT_FULL;
      else if (!strcmp(v, "restart"))
        ckpt_mode = SQLITE_CHECKPOINT_RESTART;
      else if (!strcmp(v, "truncate"))
        ckpt_mode = SQLITE_CHECKPOINT_TRUNCATE;
      else {
        fprintf(stderr, "sqlwriter: bad -checkpoint-mode %s\n", v);
        return 2;
      }
    } else if (!strcmp(k, "-journal-size-limit"))
      jsl = atol(v);
    else if (!strcmp(k, "-vacuum-every"))
      vac_every = atol(v);
    else if (!strcmp(k, "-rate"))
      rate = atof(v);
    else if (!strcmp(k, "-busy"))
      busy = atol(v);
    else if (!strcmp(k, "-update-every"))
      upd_every = atol(v);
    else if (!strcmp(k, "-delete-every"))
      del_every = atol(v);
    else {
      fprintf(stderr, "sqlwriter: unknown flag %s\n", k);
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "usage: sqlwriter -db PATH [-n TX|-duration SEC] ...\n");
    return 2;
  }
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK)
    die(db, "open");
  sqlite3_busy_timeout(db, (int)busy);
  exec(db, "PRAGMA journal_mode=WAL");
  char sql[256];
  snprintf(sql, sizeof(sql), "PRAGMA synchronous=%s", sync);
  exec(db, sql);
  snprintf(sql, sizeof(sql), "PRAGMA wal_autocheckpoint=%ld", autockpt);
  exec(db, sql);
  if (jsl >= -1) {
    snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit=%ld", jsl);
    exec(db, sql);
  }
  exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, k INTEGER, "
           "v TEXT)");
  sqlite3_stmt *ins, *upd, *del;
  if (sqlite3_prepare_v2(db, "INSERT INTO t(k, v) VALUES(?, ?)", -1, &ins,
                         NULL) ||
      sqlite3_prepare_v2(db, "UPDATE t SET k = k + 1 WHERE id = ?", -1, &upd,
                         NULL) ||
      sqlite3_prepare_v2(db, "DELETE FROM t WHERE id = ?", -1, &del, NULL))
    die(db, "prepare");
  char *payload = malloc((size_t)size + 1);
  srand((unsigned)getpid());
  double start = now();
  long tx = 0;
  sqlite3_int64 last = 0;
  while (!stop) {
    if (n >= 0 && tx >= n)
      break;
    if (duration >= 0 && now() - start >= duration)
      break;
    if (rate > 0) {
      double due = start + (double)tx / rate;
      double d = due - now();
      if (d > 0)
        usleep((useconds_t)(d * 1e6));
    }
    if (rows > 1)
      exec(db, "BEGIN");
    for (long r = 0; r < rows; r++) {
      for (long j = 0; j < size; j++)
        payload[j] = (char)('a' + rand() % 26);
      payload[size] = '\0';
      sqlite3_bind_int64(ins, 1, rand());
      sqlite3_bind_text(ins, 2, payload, (int)size, SQLITE_STATIC);
      int rc;
      while ((rc = sqlite3_step(ins)) == SQLITE_BUSY)
        usleep(1000);
      if (rc != SQLITE_DONE)
        die(db, "insert");
      sqlite3_reset(ins);
      last = sqlite3_last_insert_rowid(db);
    }
    if (rows > 1)
      exec(db, "COMMIT");
    tx++;
    if (upd_every && tx % upd_every == 0) {
      sqlite3_bind_int64(upd, 1, 1 + rand() % last);
      while (sqlite3_step(upd) == SQLITE_BUSY)
        usleep(1000);
      sqlite3_reset(upd);
    }
    if (del_every && tx % del_every == 0) {
      sqlite3_bind_int64(del, 1, 1 + rand() % last);
      while (sqlite3_step(del) == SQLITE_BUSY)
        usleep(1000);
      sqlite3_reset(del);
    }
    if (trunc_every && tx % trunc_every == 0) {
      int nlog = 0, nckpt = 0;
      sqlite3_wal_checkpoint_v2(db, NULL, ckpt_mode, &nlog, &nckpt);
    }
    if (vac_every && tx % vac_every == 0)
      exec(db, "VACUUM");
  }
  double secs = now() - start;
  /* The WAL's size now, before closing (the last connection to close
   * checkpoints and deletes it). */
  char walpath[4096];
  snprintf(walpath, sizeof(walpath), "%s-wal", path);
  struct stat st;
  long long wal_bytes = stat(walpath, &st) == 0 ? (long long)st.st_size : 0;
  sqlite3_finalize(ins);
  sqlite3_finalize(upd);
  sqlite3_finalize(del);
  if (sqlite3_close(db) != SQLITE_OK)
    die(db, "close");
  printf("committed=%ld seconds=%.3f tx_per_sec=%.0f wal_bytes=%lld\n", tx,
         secs, secs > 0 ? (double)tx / secs : 0.0, wal_bytes);
  free(payload);
  return 0;
}
