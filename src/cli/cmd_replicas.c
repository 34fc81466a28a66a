/*
 * sluice replicas: one row per replica of a database, first columns
 * `replica generation lag` (operators monitor lag with
 * `sluice replicas DB | tail -n1 | awk '{print $3}'`).
 *
 * lag is 0s when the replica holds every committed change, otherwise the
 * time since the oldest change it does not hold yet, in whole seconds
 * rounded up ("164s": a valid Go duration, and an integer once the "s" is
 * cut, for shell alerts).  A running daemon publishes that in the status
 * file of the meta directory.  A stopped daemon's last status file still
 * says whether each replica held everything at the stop; the database
 * changed since if its -wal or file is newer than that status file.
 * Without any (replicating with Litestream) it is estimated from the
 * store: the time since the database changed after the last upload.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backend.h"
#include "cli/cmd.h"
#include "core/db.h"
#include "base/err.h"
#include "cli/flags.h"
#include "base/log.h"
#include "core/store.h"
#include "cli/table.h"
#include "config/url.h"
#include "base/util.h"
#include "loop/http.h"
#include "loop/loop.h"

static const char usage_text[] =
    "The replicas command shows each replica of a database: its current\n"
    "generation, its lag behind the database and its position.\n\n"
    "Usage:\n\n"
    "\tsluice replicas [arguments] DB_PATH\n\n"
    "Arguments:\n\n"
    "\t-config PATH\n"
    "\t    Specifies the configuration file.\n"
    "\t    Defaults to $SLUICE_CONFIG, $LITESTREAM_CONFIG, /etc/sluice.yml\n"
    "\t    or /etc/litestream.yml.\n\n"
    "\t-no-expand-env\n"
    "\t    Disables environment variable expansion in configuration file.\n\n"
    "\t-replica NAME\n"
    "\t    Only show the replica with this name.\n\n" CMD_TIMEOUT_USAGE
    "Columns: replica, generation, lag (0s when caught up, else the time\n"
    "since the oldest change the replica does not hold, in whole seconds\n"
    "rounded up, e.g. 164s), position\n"
    "(generation/index:offset), last-sync (last successful upload).\n";

struct status_line {
  char name[128];
  char gen[GEN_LEN + 2];
  unsigned index;
  long long offset, pending, last_sync, errors;
  char state[32];
};

/* Reads the daemon's status file; returns the number of lines, or -1 if
 * there is none.  *running: whether its daemon still runs; *written: the
 * file's mtime. */
static int read_status(const char *meta, struct status_line *out, int max,
                       int *running, int64_t *written) {
  char *path = path_join(meta, DB_STATUS_FILE);
  FILE *f = fopen(path, "r");
  free(path);
  if (!f)
    return -1;
  struct stat sb;
  *written = fstat(fileno(f), &sb)
                 ? 0
                 : (int64_t)sb.st_mtim.tv_sec * NS_PER_SEC + sb.st_mtim.tv_nsec;
  char line[512];
  int n = 0, pid = 0;
  while (fgets(line, sizeof(line), f)) {
    if (sscanf(line, "pid %d", &pid) == 1)
      continue;
    if (n < max &&
        sscanf(line, "replica %127s %17s %u %lld %lld %lld %lld %31s",
               out[n].name, out[n].gen, &out[n].index, &out[n].offset,
               &out[n].pending, &out[n].last_sync, &out[n].errors,
               out[n].state) == 8)
      n++;
  }
  fclose(f);
  *running = pid > 0 && kill(pid, 0) == 0;
  return n;
}

/* Commits always write the -wal (checkpoints only write the database
 * file), so its mtime is the time of the last commit. */
static int64_t db_changed_ns(const char *db) {
  struct stat st;
  int64_t t = 0;
  char *wal = xasprintf("%s-wal", db);
  if (!stat(wal, &st))
    t = time_ns_sat(st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  free(wal);
  return t;
}

/* ... or, once the -wal is gone (the last connection to close deletes it
 * after checkpointing it into the database file), the database file's. */
static int64_t db_or_wal_changed_ns(const char *db) {
  struct stat st;
  int64_t t = db_changed_ns(db);
  if (!stat(db, &st))
    t = MAX(t, (int64_t)st.st_mtim.tv_sec * NS_PER_SEC + st.st_mtim.tv_nsec);
  return t;
}

static void row(struct table *tb, const char *name, const char *gen,
                int64_t lag, const char *pos, int64_t last_sync) {
  char lagbuf[40], when[32] = "-";
  int64_t secs = lag > 0 ? (lag + NS_PER_SEC - 1) / NS_PER_SEC : 0;
  snprintf(lagbuf, sizeof(lagbuf), "%llds", (long long)secs);
  if (last_sync > 0)
    time_format_rfc3339(last_sync, when);
  table_addv(tb, name, gen, lagbuf, pos, when);
}

/* No daemon: look at the store. */
static int from_store(struct table *tb, struct backend *b, const char *db) {
  char err[512];
  struct gen_list gens = {0};
  if (store_generations_sync(b, &gens, err, sizeof(err))) {
    log_error(NULL, b->name, "%s", err);
    return 1;
  }
  const char *best = NULL;
  int64_t best_end = 0;
  for (size_t i = 0; i < gens.n; i++) {
    int64_t s, e;
    if (store_generation_bounds_sync(b, gens.gens[i], &s, &e, err, sizeof(err)))
      continue;
    if (!best || e > best_end) {
      best = gens.gens[i];
      best_end = e;
    }
  }
  if (!best) {
    row(tb, b->name, "-", 0, "-", 0);
    gen_list_destroy(&gens);
    return 0;
  }
  int64_t changed = db_changed_ns(db);
  int64_t lag = changed > best_end ? time_now_ns() - changed : 0;
  row(tb, b->name, best, lag, "-", best_end);
  gen_list_destroy(&gens);
  return 0;
}

int cmd_replicas(int argc, char **argv) {
  char *config_path = NULL, *replica = NULL;
  int no_expand = 0;
  int64_t timeout = CMD_TIMEOUT_DEFAULT_NS;
  struct flag flags[] = {
      {"config", FLAG_STRING, &config_path, 0},
      {"no-expand-env", FLAG_BOOL, &no_expand, 0},
      {"replica", FLAG_STRING, &replica, 0},
      {"timeout", FLAG_DURATION, &timeout, 0},
  };
  int nf = (int)ARRAY_SIZE(flags);
  int first = flags_parse(flags, nf, argc, argv, usage_text);
  int rc = 1;
  if (first < 0)
    goto out;
  if (first >= argc) {
    fprintf(stderr, "database path required\n");
    goto out;
  }
  if (argc - first > 1) {
    fprintf(stderr, "too many arguments\n");
    goto out;
  }
  if (url_is_url(argv[first])) {
    fprintf(stderr, "replicas needs a database path from the config, not a "
                    "replica URL\n");
    goto out;
  }
  loop_init();
  http_init();
  cmd_set_deadline(timeout);
  struct cmd_target t;
  char err[1024];
  if (cmd_target_open(&t, argv[first], config_path, no_expand, replica, 0, err,
                      sizeof(err))) {
    rc = cmd_fail("%s", err);
    cmd_target_close(&t);
    goto out;
  }
  char *meta = meta_dir_path(t.db->path, t.db->meta_path);
  struct status_line st[64];
  int running = 0;
  int64_t written = 0;
  int n = read_status(meta, st, 64, &running, &written);
  /* A stopped daemon: changes since its last status are not held. */
  int64_t changed = running || n < 0 ? 0 : db_or_wal_changed_ns(t.db->path);
  struct table tb;
  table_init(&tb, 5);
  table_addv(&tb, "replica", "generation", "lag", "position", "last-sync");
  rc = 0;
  int64_t now = time_now_ns();
  for (size_t i = 0; i < t.n_backends; i++) {
    struct backend *b = t.backends[i];
    int found = 0;
    for (int j = 0; j < n; j++) {
      if (strcmp(st[j].name, b->name))
        continue;
      found = 1;
      char pos[64] = "-";
      if (strcmp(st[j].gen, "-"))
        snprintf(pos, sizeof(pos), "%s/%08x:%lld", st[j].gen, st[j].index,
                 st[j].offset);
      int64_t lag =
          st[j].pending > 0 && st[j].pending < now ? now - st[j].pending : 0;
      if (!st[j].pending && changed > written)
        lag = now - changed;
      row(&tb, b->name, st[j].gen, lag < 0 ? 0 : lag, pos, st[j].last_sync);
    }
    if (!found)
      rc |= from_store(&tb, b, t.db->path);
  }
  table_print(&tb, stdout);
  table_destroy(&tb);
  free(meta);
  cmd_target_close(&t);
out:
  flags_free(flags, nf);
  return rc;
}
