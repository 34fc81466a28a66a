/*
 * The listing commands (spec 5.3): databases, generations, snapshots, wal.
 * Output is a tabwriter-style table on stdout; times are RFC 3339 UTC;
 * index and offset are decimal.  A replica whose listing fails is logged
 * and skipped, as in Litestream, but the command then exits 1 so scripts
 * notice.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "backends/backend.h"
#include "cli/cmd.h"
#include "cli/flags.h"
#include "base/log.h"
#include "core/store.h"
#include "cli/table.h"
#include "base/util.h"
#include "loop/loop.h"

#define COMMON_ARGS                                                            \
  "\t-config PATH\n"                                                           \
  "\t    Specifies the configuration file.\n"                                  \
  "\t    Defaults to $SLUICE_CONFIG, $LITESTREAM_CONFIG, /etc/sluice.yml\n"    \
  "\t    or /etc/litestream.yml.\n"                                            \
  "\n"                                                                         \
  "\t-no-expand-env\n"                                                         \
  "\t    Disables environment variable expansion in configuration file.\n"     \
  "\n"

static const char databases_usage[] =
    "The databases command lists all databases in the configuration file.\n"
    "A dir entry lists every database found under its directory; with\n"
    "dir entries a third column, location, shows each database's replica\n"
    "paths (the entry's joined with the database's path under dir).\n"
    "\n"
    "Usage:\n"
    "\n"
    "\tsluice databases [arguments]\n"
    "\n"
    "Arguments:\n"
    "\n" COMMON_ARGS;

static const char generations_usage[] =
    "The generations command lists all generations for a database or\n"
    "replica. It also lists stats about their lag behind the primary\n"
    "database and the time range they cover.\n"
    "\n"
    "Usage:\n"
    "\n"
    "\tsluice generations [arguments] DB_PATH\n"
    "\n"
    "\tsluice generations [arguments] REPLICA_URL\n"
    "\n"
    "Arguments:\n"
    "\n" COMMON_ARGS "\t-replica NAME\n"
    "\t    Optional, filters by replica.\n"
    "\n" CMD_TIMEOUT_USAGE;

static const char snapshots_usage[] =
    "The snapshots command lists all snapshots available for a database or\n"
    "replica.\n"
    "\n"
    "Usage:\n"
    "\n"
    "\tsluice snapshots [arguments] DB_PATH\n"
    "\n"
    "\tsluice snapshots [arguments] REPLICA_URL\n"
    "\n"
    "Arguments:\n"
    "\n" COMMON_ARGS "\t-replica NAME\n"
    "\t    Optional, filter by a specific replica.\n"
    "\n" CMD_TIMEOUT_USAGE "Examples:\n"
    "\n"
    "\t# List all snapshots for a database.\n"
    "\t$ sluice snapshots /path/to/db\n"
    "\n"
    "\t# List all snapshots on S3.\n"
    "\t$ sluice snapshots -replica s3 /path/to/db\n"
    "\n"
    "\t# List all snapshots by replica URL.\n"
    "\t$ sluice snapshots s3://mybkt/db\n"
    "\n";

static const char wal_usage[] =
    "The wal command lists all wal segments available for a database.\n"
    "\n"
    "Usage:\n"
    "\n"
    "\tsluice wal [arguments] DB_PATH\n"
    "\n"
    "\tsluice wal [arguments] REPLICA_URL\n"
    "\n"
    "Arguments:\n"
    "\n" COMMON_ARGS "\t-replica NAME\n"
    "\t    Optional, filter by a specific replica.\n"
    "\n"
    "\t-generation NAME\n"
    "\t    Optional, filter by a specific generation.\n"
    "\n" CMD_TIMEOUT_USAGE "Examples:\n"
    "\n"
    "\t# List all WAL segments for a database.\n"
    "\t$ sluice wal /path/to/db\n"
    "\n"
    "\t# List all WAL segments on S3 for a specific generation.\n"
    "\t$ sluice wal -replica s3 -generation xxxxxxxx /path/to/db\n"
    "\n"
    "\t# List all WAL segments for replica URL.\n"
    "\t$ sluice wal s3://mybkt/db\n"
    "\n";

enum list_cmd { LC_GENERATIONS, LC_SNAPSHOTS, LC_WAL };

struct list_args {
  char *config;
  int no_expand_env;
  char *replica;
  char *generation;
  int64_t timeout;
};

/* Parses flags and the single positional argument.  Returns the exit code
 * to use (>= 0) or -1 to go on. */
static int parse_args(enum list_cmd cmd, int argc, char **argv,
                      struct list_args *a, const char **arg) {
  struct flag flags[] = {
      {"config", FLAG_STRING, &a->config, 0},
      {"no-expand-env", FLAG_BOOL, &a->no_expand_env, 0},
      {"replica", FLAG_STRING, &a->replica, 0},
      {"timeout", FLAG_DURATION, &a->timeout, 0},
      {"generation", FLAG_STRING, &a->generation, 0},
  };
  int nflags = cmd == LC_WAL ? 5 : 4;
  const char *usage = cmd == LC_GENERATIONS ? generations_usage
                      : cmd == LC_SNAPSHOTS ? snapshots_usage
                                            : wal_usage;
  int i = flags_parse(flags, nflags, argc, argv, usage);
  if (i < 0)
    return 1;
  if (i >= argc || !argv[i][0])
    return cmd_fail(cmd == LC_GENERATIONS
                        ? "database path or replica URL required"
                        : "database path required");
  if (argc - i > 1)
    return cmd_fail("too many arguments");
  *arg = argv[i];
  return -1;
}

static void free_args(struct list_args *a) {
  free(a->config);
  free(a->replica);
  free(a->generation);
}

/* Later of the database's and its -wal's modification times, or 0. */
static int64_t db_updated_ns(const char *path) {
  struct stat st;
  if (stat(path, &st))
    return 0;
  int64_t t = time_ns_sat(st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  char *wal = xasprintf("%s-wal", path);
  if (!stat(wal, &st))
    t = MAX(t, time_ns_sat(st.st_mtim.tv_sec, st.st_mtim.tv_nsec));
  free(wal);
  return t;
}

static int list_generations(struct cmd_target *t, struct table *tb) {
  int failed = 0;
  int64_t updated = 0;
  if (t->db_path)
    updated = db_updated_ns(t->db_path);
  if (!updated)
    updated = time_now_ns(); /* URL mode, or no database yet */
  for (size_t r = 0; r < t->n_backends; r++) {
    struct backend *b = t->backends[r];
    struct gen_list gens = {0};
    char err[1024];
    if (store_generations_sync(b, &gens, err, sizeof(err))) {
      log_error(t->db_path, b->name, "cannot list generations: %s", err);
      failed = 1;
      continue;
    }
    for (size_t g = 0; g < gens.n; g++) {
      int64_t start, end;
      if (store_generation_bounds_sync(b, gens.gens[g], &start, &end, err,
                                       sizeof(err))) {
        log_error(t->db_path, b->name,
                  "cannot determine generation time bounds: %s", err);
        failed = 1;
        continue;
      }
      char lag[40], s1[32], s2[32];
      /* Never negative: the last upload may postdate the last change. */
      duration_format(duration_round_lag(MAX(0, updated - end)), lag);
      time_format_rfc3339(start, s1);
      time_format_rfc3339(end, s2);
      table_addv(tb, b->name, gens.gens[g], lag, s1, s2);
    }
    gen_list_destroy(&gens);
  }
  return failed;
}

static int list_snapshots(struct cmd_target *t, struct table *tb) {
  int failed = 0;
  for (size_t r = 0; r < t->n_backends; r++) {
    struct backend *b = t->backends[r];
    struct gen_list gens = {0};
    char err[1024];
    if (store_generations_sync(b, &gens, err, sizeof(err))) {
      log_error(t->db_path, b->name, "cannot determine snapshots: %s", err);
      failed = 1;
      continue;
    }
    for (size_t g = 0; g < gens.n; g++) {
      struct snapshot_list l = {0};
      if (store_snapshots_sync(b, gens.gens[g], &l, err, sizeof(err))) {
        log_error(t->db_path, b->name, "cannot determine snapshots: %s", err);
        failed = 1;
        continue;
      }
      for (size_t i = 0; i < l.n; i++) {
        char idx[16], size[32], created[32];
        snprintf(idx, sizeof(idx), "%" PRIu32, l.v[i].index);
        snprintf(size, sizeof(size), "%" PRId64, l.v[i].size);
        time_format_rfc3339(l.v[i].created_ns, created);
        table_addv(tb, b->name, l.v[i].gen, idx, size, created);
      }
      snapshot_list_destroy(&l);
    }
    gen_list_destroy(&gens);
  }
  return failed;
}

static int list_wal(struct cmd_target *t, const char *only_gen,
                    struct table *tb) {
  int failed = 0;
  for (size_t r = 0; r < t->n_backends; r++) {
    struct backend *b = t->backends[r];
    struct gen_list gens = {0};
    char err[1024];
    if (store_generations_sync(b, &gens, err, sizeof(err))) {
      log_error(t->db_path, b->name, "cannot determine wal segments: %s", err);
      failed = 1;
      continue;
    }
    for (size_t g = 0; g < gens.n; g++) {
      if (only_gen && strcmp(only_gen, gens.gens[g]))
        continue;
      struct segment_list l = {0};
      if (store_segments_sync(b, gens.gens[g], &l, err, sizeof(err))) {
        log_error(t->db_path, b->name, "cannot determine wal segments: %s",
                  err);
        failed = 1;
        continue;
      }
      for (size_t i = 0; i < l.n; i++) {
        char idx[16], off[32], size[32], created[32];
        snprintf(idx, sizeof(idx), "%" PRIu32, l.v[i].index);
        snprintf(off, sizeof(off), "%" PRId64, l.v[i].offset);
        snprintf(size, sizeof(size), "%" PRId64, l.v[i].size);
        time_format_rfc3339(l.v[i].created_ns, created);
        table_addv(tb, b->name, l.v[i].gen, idx, off, size, created);
      }
      segment_list_destroy(&l);
    }
    gen_list_destroy(&gens);
  }
  return failed;
}

static int run_list(enum list_cmd cmd, int argc, char **argv) {
  struct list_args a = {.timeout = CMD_TIMEOUT_DEFAULT_NS};
  const char *arg = NULL;
  int rc = parse_args(cmd, argc, argv, &a, &arg);
  if (rc >= 0) {
    free_args(&a);
    return rc;
  }
  if (loop_init()) {
    free_args(&a);
    return cmd_fail("cannot start the event loop");
  }
  struct cmd_target t;
  char err[1024];
  if (cmd_target_open(&t, arg, a.config, a.no_expand_env, a.replica, 0, err,
                      sizeof(err))) {
    cmd_target_close(&t);
    free_args(&a);
    loop_close();
    return cmd_fail("%s", err);
  }
  cmd_set_deadline(a.timeout);
  struct table tb;
  int failed;
  switch (cmd) {
  case LC_GENERATIONS:
    table_init(&tb, 5);
    table_addv(&tb, "name", "generation", "lag", "start", "end");
    failed = list_generations(&t, &tb);
    break;
  case LC_SNAPSHOTS:
    table_init(&tb, 5);
    table_addv(&tb, "replica", "generation", "index", "size", "created");
    failed = list_snapshots(&t, &tb);
    break;
  default:
    table_init(&tb, 6);
    table_addv(&tb, "replica", "generation", "index", "offset", "size",
               "created");
    failed = list_wal(&t, a.generation, &tb);
    break;
  }
  table_print(&tb, stdout);
  fflush(stdout);
  table_destroy(&tb);
  cmd_target_close(&t);
  free_args(&a);
  loop_close();
  return failed ? 1 : 0;
}

int cmd_generations(int argc, char **argv) {
  return run_list(LC_GENERATIONS, argc, argv);
}

int cmd_snapshots(int argc, char **argv) {
  return run_list(LC_SNAPSHOTS, argc, argv);
}

int cmd_wal(int argc, char **argv) {
  return run_list(LC_WAL, argc, argv);
}

int cmd_databases(int argc, char **argv) {
  char *config = NULL;
  int no_expand_env = 0;
  struct flag flags[] = {
      {"config", FLAG_STRING, &config, 0},
      {"no-expand-env", FLAG_BOOL, &no_expand_env, 0},
  };
  int i = flags_parse(flags, 2, argc, argv, databases_usage);
  if (i < 0)
    return 1;
  if (i < argc) {
    free(config);
    return cmd_fail("too many arguments");
  }
  struct config cfg;
  int explicit_ = 0;
  char *path = config_default_path(config, &explicit_);
  char err[1024];
  int rc = config_load(path, !no_expand_env, &cfg, err, sizeof(err));
  free(path);
  free(config);
  if (!rc)
    log_setup(&cfg.logging);
  if (!rc)
    rc = config_expand_dirs(&cfg, err, sizeof(err));
  if (rc) {
    config_destroy(&cfg);
    return cmd_fail("%s", err);
  }
  log_setup(&cfg.logging);
  /* With dir entries, a third column: where each database's replicas are
   * (the entry's replica path joined with its path under dir).  Without,
   * Litestream's two columns exactly. */
  int where = cfg.n_dirs > 0;
  struct table tb;
  table_init(&tb, where ? 3 : 2);
  if (where)
    table_addv(&tb, "path", "replicas", "location");
  else
    table_addv(&tb, "path", "replicas");
  for (size_t d = 0; d < cfg.n_dbs; d++) {
    struct buf names, locs;
    buf_init(&names, 0);
    buf_init(&locs, 0);
    buf_append(&names, "", 0);
    for (size_t r = 0; r < cfg.dbs[d].n_replicas; r++) {
      const struct replica_config *rc_ = &cfg.dbs[d].replicas[r];
      const char *name = rc_->name ? rc_->name : rc_->type;
      if (r) {
        buf_append(&names, ",", 1);
        buf_append(&locs, ",", 1);
      }
      buf_append(&names, name ? name : "", strlen(name ? name : ""));
      const char *host = rc_->bucket ? rc_->bucket : rc_->host;
      const char *p = rc_->path ? rc_->path : "";
      if (!strcmp(rc_->type ? rc_->type : "", "file"))
        buf_appendf(&locs, "%s", p);
      else
        buf_appendf(&locs, "%s://%s%s%s", rc_->type ? rc_->type : "",
                    host ? host : "", p[0] == '/' ? "" : "/", p);
    }
    buf_append(&locs, "", 1);
    if (where)
      table_addv(&tb, cfg.dbs[d].path, (const char *)names.data,
                 (const char *)locs.data);
    else
      table_addv(&tb, cfg.dbs[d].path, (const char *)names.data);
    buf_destroy(&names);
    buf_destroy(&locs);
  }
  table_print(&tb, stdout);
  fflush(stdout);
  table_destroy(&tb);
  config_destroy(&cfg);
  return 0;
}
