/*
 * shortwriter: an application that opens the database, writes one
 * transaction and closes it again, over and over (a PHP request, a cron
 * job, Python's connect()/execute()/close()).  Writes into
 * t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT), creating it if needed.
 *
 *   shortwriter -db PATH -n TX [-min-ms A -max-ms B] [-busy MS] [-size BYTES]
 *
 * -busy 0 (the default) sets no busy timeout at all, like the sqlite3 CLI:
 * a transaction that finds the database locked fails, is counted in
 * `locked=` and is not retried.  Between transactions it sleeps a random
 * time in [A, B] ms.  Prints committed, locked, elapsed seconds,
 * transactions per second and the largest -wal size seen after a close.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One connection, one transaction.  Returns 0, 1 if locked, -1 on any
 * other error. */
static int one_tx(const char *path, long busy, long size, int create) {
  sqlite3 *db;
  if (sqlite3_open(path, &db) != SQLITE_OK) {
    fprintf(stderr, "shortwriter: open %s: %s\n", path, sqlite3_errmsg(db));
    sqlite3_close(db);
    return -1;
  }
  if (busy > 0)
    sqlite3_busy_timeout(db, (int)busy);
  char sql[256 + 64];
  char *payload = malloc((size_t)size + 1);
  for (long j = 0; j < size; j++)
    payload[j] = (char)('a' + rand() % 26);
  payload[size] = '\0';
  int rc = SQLITE_OK;
  if (create)
    rc = sqlite3_exec(db,
                      "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS "
                      "t(id INTEGER PRIMARY KEY, k INTEGER, v TEXT)",
                      NULL, NULL, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_stmt *st;
    snprintf(sql, sizeof(sql), "INSERT INTO t(k, v) VALUES(%d, ?)", rand());
    rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
      sqlite3_bind_text(st, 1, payload, (int)size, SQLITE_STATIC);
      rc = sqlite3_step(st);
      if (rc == SQLITE_DONE)
        rc = SQLITE_OK;
      sqlite3_finalize(st);
    }
  }
  int out = 0;
  if (rc != SQLITE_OK) {
    int busy_err = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
    fprintf(stderr, "shortwriter: %s\n", sqlite3_errmsg(db));
    out = busy_err ? 1 : -1;
  }
  free(payload);
  if (sqlite3_close(db) != SQLITE_OK) {
    fprintf(stderr, "shortwriter: close: %s\n", sqlite3_errmsg(db));
    return -1;
  }
  return out;
}

int main(int argc, char **argv) {
  const char *path = NULL;
  long n = 100, min_ms = 0, max_ms = 0, busy = 0, size = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "-db"))
      path = v;
    else if (!strcmp(k, "-n"))
      n = atol(v);
    else if (!strcmp(k, "-min-ms"))
      min_ms = atol(v);
    else if (!strcmp(k, "-max-ms"))
      max_ms = atol(v);
    else if (!strcmp(k, "-busy"))
      busy = atol(v);
    else if (!strcmp(k, "-size"))
      size = atol(v);
    else {
      fprintf(stderr, "shortwriter: unknown flag %s\n", k);
      return 2;
    }
  }
  if (!path || max_ms < min_ms) {
    fprintf(stderr, "usage: shortwriter -db PATH -n TX [-min-ms A -max-ms B] "
                    "[-busy MS] [-size BYTES]\n");
    return 2;
  }
  srand((unsigned)getpid() ^ (unsigned)time(NULL));
  char walpath[4096];
  snprintf(walpath, sizeof(walpath), "%s-wal", path);
  long committed = 0, locked = 0;
  long long wal_max = 0;
  double start = now();
  for (long i = 0; i < n; i++) {
    int rc = one_tx(path, busy, size, i == 0);
    if (rc < 0)
      return 1;
    if (rc == 1)
      locked++;
    else
      committed++;
    struct stat st;
    if (stat(walpath, &st) == 0 && st.st_size > wal_max)
      wal_max = st.st_size;
    if (max_ms > 0) {
      long ms = min_ms + (max_ms > min_ms ? rand() % (max_ms - min_ms + 1) : 0);
      usleep((useconds_t)ms * 1000);
    }
  }
  double secs = now() - start;
  printf("committed=%ld locked=%ld seconds=%.3f tx_per_sec=%.0f "
         "wal_max_bytes=%lld\n",
         committed, locked, secs, secs > 0 ? (double)n / secs : 0.0, wal_max);
  return 0;
}
