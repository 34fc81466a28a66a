/*
 * `restore` (spec 4, 5.3): rebuild a database from a replica of the config
 * file's database or from a replica URL.  The engine is core/restore.c.
 */
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backend.h"
#include "cli/cmd.h"
#include "base/err.h"
#include "cli/flags.h"
#include "base/log.h"
#include "config/url.h"
#include "core/restore.h"
#include "base/util.h"
#include "loop/loop.h"

static const char restore_usage[] =
    "The restore command recovers a database from a previous snapshot and "
    "WAL.\n"
    "\n"
    "Usage:\n"
    "\n"
    "\tsluice restore [arguments] DB_PATH\n"
    "\n"
    "\tsluice restore [arguments] REPLICA_URL\n"
    "\n"
    "\tsluice restore [arguments] -o OUTDIR DIR\n"
    "\n"
    "\tDIR is the dir of a `dir:` entry: every database of it that the\n"
    "\tstore holds (found by listing the store) is restored in parallel\n"
    "\tto OUTDIR/<its path under DIR>, one line each and a summary\n"
    "\t(restored, skipped, failed); exit 1 if any failed.\n"
    "\n"
    "Arguments:\n"
    "\n"
    "\t-config PATH\n"
    "\t    Specifies the configuration file.\n"
    "\t    Defaults to $SLUICE_CONFIG, $LITESTREAM_CONFIG, /etc/sluice.yml\n"
    "\t    or /etc/litestream.yml.\n"
    "\n"
    "\t-no-expand-env\n"
    "\t    Disables environment variable expansion in configuration file.\n"
    "\n"
    "\t-replica NAME\n"
    "\t    Restore from a specific replica.\n"
    "\t    Defaults to replica with latest data.\n"
    "\n"
    "\t-generation NAME\n"
    "\t    Restore from a specific generation.\n"
    "\t    Defaults to generation with latest data.\n"
    "\n"
    "\t-index NUM\n"
    "\t    Restore up to a specific hex-encoded WAL index (inclusive).\n"
    "\t    Defaults to use the highest available index.\n"
    "\n"
    "\t-timestamp TIMESTAMP\n"
    "\t    Restore to a specific point-in-time.\n"
    "\t    Defaults to use the latest available backup.\n"
    "\n"
    "\t-o PATH\n"
    "\t    Output path of the restored database.\n"
    "\t    Defaults to original DB path.\n"
    "\n"
    "\t-if-db-not-exists\n"
    "\t    Returns exit code of 0 if the database already exists.\n"
    "\n"
    "\t-if-replica-exists\n"
    "\t    Returns exit code of 0 if no backups found.\n"
    "\n"
    "\t-parallelism NUM\n"
    "\t    Determines the number of WAL files downloaded in parallel\n"
    "\t    (with a DIR: the number of databases restored at once).\n"
    "\t    Defaults to 8.\n"
    "\n"
    "\t-timeout DURATION\n"
    "\t    Gives up when the replicas have not answered the listing that\n"
    "\t    chooses what to restore within this time (e.g. 2m). Defaults\n"
    "\t    to 30s; 0 waits with the daemon's retries. Downloads are not\n"
    "\t    bounded by it.\n"
    "\t-integrity MODE\n"
    "\t    Check of the restored database: full (PRAGMA integrity_check),\n"
    "\t    quick (PRAGMA quick_check), off, or auto: full up to 1 GiB,\n"
    "\t    quick above.  Defaults to auto.\n"
    "\n"
    "Examples:\n"
    "\n"
    "\t# Restore latest replica for database to original location.\n"
    "\t$ sluice restore /path/to/db\n"
    "\n"
    "\t# Restore replica for database to a given point in time.\n"
    "\t$ sluice restore -timestamp 2020-01-01T00:00:00Z /path/to/db\n"
    "\n"
    "\t# Restore latest replica for database to new /tmp directory\n"
    "\t$ sluice restore -o /tmp/db /path/to/db\n"
    "\n"
    "\t# Restore database from latest generation on S3.\n"
    "\t$ sluice restore -replica s3 /path/to/db\n"
    "\n"
    "\t# Restore every database of a dir entry (a lost host).\n"
    "\t$ sluice restore -o /srv/tenants /srv/tenants\n"
    "\n"
    "\t# Restore database from a specific generation on S3.\n"
    "\t$ sluice restore -replica s3 -generation xxxxxxxx /path/to/db\n"
    "\n";

struct restore_args {
  char *config;
  int no_expand_env;
  char *output;
  char *replica;
  char *generation;
  char *index;
  char *timestamp;
  long parallelism;
  char *integrity;
  int if_db_not_exists;
  int if_replica_exists;
  int64_t timeout;
};

/* -index is hex and fits a WAL index (ParseInt(s, 16, 32) in Go). */
/* The restore command's memory for WAL pages (the daemon's validation
 * restores keep the default, RESTORE_MEMORY_DEFAULT). */
#define RESTORE_CLI_MEMORY (256LL << 20)

static int parse_index(const char *s, uint32_t *out) {
  if (!*s)
    return -1;
  uint64_t v = 0;
  for (const char *p = s; *p; p++) {
    int d;
    if (*p >= '0' && *p <= '9')
      d = *p - '0';
    else if (*p >= 'a' && *p <= 'f')
      d = *p - 'a' + 10;
    else if (*p >= 'A' && *p <= 'F')
      d = *p - 'A' + 10;
    else
      return -1;
    v = v << 4 | (uint64_t)d;
    if (v > MAX_WAL_INDEX)
      return -1;
  }
  *out = (uint32_t)v;
  return 0;
}

/* 0 with *rc when arg is the dir of a dir entry (restored as a whole),
 * else -1. */
static int try_restore_dir(struct restore_args *a, const char *arg,
                           const struct restore_opts *o, int *rc) {
  int explicit_ = 0;
  char *path = config_default_path(a->config, &explicit_);
  struct config cfg;
  char err[1024];
  memset(&cfg, 0, sizeof(cfg));
  int lrc = config_load(path, !a->no_expand_env, &cfg, err, sizeof(err));
  free(path);
  if (lrc)
    return -1; /* reported by the ordinary path */
  char *abs = path_abs(arg);
  size_t n = strlen(abs);
  while (n > 1 && abs[n - 1] == '/')
    abs[--n] = '\0';
  const struct db_config *e = NULL;
  for (size_t i = 0; i < cfg.n_dirs && !e; i++)
    if (!strcmp(cfg.dirs[i].dir, abs))
      e = &cfg.dirs[i];
  free(abs);
  if (!e) {
    config_destroy(&cfg);
    return -1;
  }
  log_setup(&cfg.logging);
  if (!a->output)
    *rc = cmd_fail("restoring dir %s needs -o OUTDIR", e->dir);
  else if (a->generation || a->index)
    *rc = cmd_fail("-generation and -index name one database: not valid "
                   "with a dir");
  else {
    char *out = path_abs(a->output);
    struct restore_opts ro = *o;
    ro.parallelism = MAX(1, ro.parallelism / 2);
    ro.memory = MAX(RESTORE_MEMORY_DEFAULT,
                    RESTORE_CLI_MEMORY / MAX(1, (int64_t)o->parallelism));
    *rc = cmd_restore_dir(&cfg, e, out, &ro, a->replica, (int)o->parallelism,
                          a->timeout);
    free(out);
  }
  config_destroy(&cfg);
  return 0;
}

static int run(struct restore_args *a, const char *arg) {
  struct restore_opts o = {0};
  if (a->index) {
    if (parse_index(a->index, &o.index))
      return cmd_fail("invalid hexadecimal format");
    o.has_index = 1;
  }
  if (a->timestamp) {
    /* A valid time past 2262 (or before 1677) saturates: after the last
     * upload it means the latest state, before the first no backups. */
    int r = time_parse_rfc3339(a->timestamp, &o.timestamp_ns);
    if (r && r != -ERANGE)
      return cmd_fail("invalid -timestamp, must specify in ISO 8601 format "
                      "(e.g. 2000-01-01T00:00:00Z)");
    o.has_timestamp = 1;
  }
  if (o.has_index && o.has_timestamp)
    return cmd_fail("cannot specify index & timestamp to restore");
  static const char *modes[] = {"auto", "full", "quick", "off"};
  o.integrity = -1;
  for (int m = 0; m < (int)ARRAY_SIZE(modes); m++)
    if (!strcmp(a->integrity ? a->integrity : "auto", modes[m]))
      o.integrity = m; /* enum restore_integrity, in this order */
  if (o.integrity < 0)
    return cmd_fail("invalid -integrity %s: must be auto, full, quick or off",
                    a->integrity);
  o.generation = a->generation;
  o.parallelism = a->parallelism < 1 ? 1 : (int)MIN(a->parallelism, 1024);
  o.memory = RESTORE_CLI_MEMORY;

  if (loop_init())
    return cmd_fail("cannot start the event loop");
  if (!url_is_url(arg)) { /* a dir entry's dir: every database in it */
    int drc = -1;
    if (try_restore_dir(a, arg, &o, &drc) == 0) {
      if (loop_close())
        log_warn(NULL, NULL, "event loop closed with handles still open");
      return drc;
    }
  }
  struct cmd_target t;
  char err[1024];
  int rc = 1;
  char *out = NULL;
  if (cmd_target_open(&t, arg, a->config, a->no_expand_env, a->replica, 1, err,
                      sizeof(err))) {
    rc = cmd_fail("%s", err);
    goto done;
  }
  if (t.url_mode && !a->output) {
    rc = cmd_fail("output path required");
    goto done;
  }
  out = path_abs(a->output ? a->output : t.db_path);
  o.db = t.db_path ? t.db_path : out;

  struct stat st;
  if (a->if_db_not_exists && !stat(out, &st)) {
    log_info(o.db, NULL, "database already exists, skipping");
    rc = 0;
    goto done;
  }
  struct restore_target target;
  cmd_set_deadline(a->timeout);
  int status = restore_choose_sync(t.backends, t.n_backends, &o, &target, err,
                                   sizeof(err));
  cmd_set_deadline(0);
  if (status == ERR_NO_BACKUPS && a->if_replica_exists) {
    log_info(o.db, NULL, "no matching backups found");
    rc = 0;
    goto done;
  }
  if (status) {
    rc = cmd_fail("%s", err);
    goto done;
  }
  struct backend *b = t.backends[target.replica];
  status = restore_run_sync(b, target.gen, &o, out, err, sizeof(err));
  rc = status ? cmd_fail("%s", err) : 0;
done:
  free(out);
  cmd_target_close(&t);
  if (loop_close())
    log_warn(NULL, NULL, "event loop closed with handles still open");
  return rc;
}

int cmd_restore(int argc, char **argv) {
  /* A restore allocates and frees buffers of megabytes (objects, decoded
   * blocks, pages): keep them in the heap for reuse instead of mapping
   * fresh zeroed pages for each one and unmapping them again (a third of
   * the restore's system time on a WAL-heavy replica). */
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  struct restore_args a = {.parallelism = 8, .timeout = CMD_TIMEOUT_DEFAULT_NS};
  struct flag flags[] = {
      {"config", FLAG_STRING, &a.config, 0},
      {"no-expand-env", FLAG_BOOL, &a.no_expand_env, 0},
      {"o", FLAG_STRING, &a.output, 0},
      {"replica", FLAG_STRING, &a.replica, 0},
      {"generation", FLAG_STRING, &a.generation, 0},
      {"index", FLAG_STRING, &a.index, 0},
      {"timestamp", FLAG_STRING, &a.timestamp, 0},
      {"parallelism", FLAG_INT, &a.parallelism, 0},
      {"integrity", FLAG_STRING, &a.integrity, 0},
      {"if-db-not-exists", FLAG_BOOL, &a.if_db_not_exists, 0},
      {"if-replica-exists", FLAG_BOOL, &a.if_replica_exists, 0},
      {"timeout", FLAG_DURATION, &a.timeout, 0},
  };
  int n = (int)ARRAY_SIZE(flags);
  int i = flags_parse(flags, n, argc, argv, restore_usage);
  int rc;
  if (i < 0)
    rc = 1;
  else if (i >= argc || !argv[i][0])
    rc = cmd_fail("database path or replica URL required");
  else if (argc - i > 1)
    rc = cmd_fail("too many arguments");
  else
    rc = run(&a, argv[i]);
  flags_free(flags, n);
  return rc;
}
