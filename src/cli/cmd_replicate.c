/*
 * sluice replicate: flags and the command-line mode; the daemon itself is
 * daemon/daemon.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/util.h"
#include "cli/cmd.h"
#include "cli/flags.h"
#include "config/config.h"
#include "daemon/daemon.h"

static const char usage_text[] =
    "The replicate command starts a server to monitor & replicate databases.\n"
    "You can specify your database & replicas in a configuration file or you "
    "can\nreplicate a single database file by specifying its path and its "
    "replicas in the\ncommand line arguments.\n\n"
    "Usage:\n\n"
    "\tsluice replicate [arguments]\n\n"
    "\tsluice replicate [arguments] DB_PATH REPLICA_URL [REPLICA_URL...]\n\n"
    "Arguments:\n\n"
    "\t-config PATH\n"
    "\t    Specifies the configuration file.\n"
    "\t    Defaults to $SLUICE_CONFIG, $LITESTREAM_CONFIG, /etc/sluice.yml\n"
    "\t    or /etc/litestream.yml.\n\n"
    "\t-exec CMD\n"
    "\t    Executes a subcommand. sluice exits when the child process exits,\n"
    "\t    after a final sync, with the child's exit code.\n\n"
    "\t-force-takeover\n"
    "\t    Takes each replica path's single-writer lease (lock.json) now,\n"
    "\t    even from another live sluice, which stops uploading to that\n"
    "\t    path at its next renewal. Without it a path leased by another\n"
    "\t    host is refused until that lease lapses (config: "
    "force-takeover).\n\n"
    "\t-no-expand-env\n"
    "\t    Disables environment variable expansion in configuration file.\n\n"
    "\t-verbose\n"
    "\t    Logs at debug level.\n";

/* Builds the config of `replicate DB_PATH URL...`. */
static int config_from_args(int argc, char **argv, struct config *c) {
  memset(c, 0, sizeof(*c));
  c->logging.level = LOG_INFO;
  c->logging.to_stderr = 1;
  c->shutdown_timeout = DEFAULT_SHUTDOWN_TIMEOUT;
  c->health_max_sync_age = DEFAULT_HEALTH_MAX_SYNC_AGE;
  c->metrics_per_database_max = DEFAULT_METRICS_PER_DATABASE_MAX;
  c->dbs = xcalloc(1, sizeof(struct db_config));
  c->n_dbs = 1;
  config_db_init(&c->dbs[0], argv[0]);
  struct db_config *d = &c->dbs[0];
  d->replicas = xcalloc((size_t)argc, sizeof(struct replica_config));
  for (int i = 1; i < argc; i++) {
    char err[512];
    if (config_replica_from_url(argv[i], &d->replicas[d->n_replicas], err,
                                sizeof(err))) {
      fprintf(stderr, "%s\n", err);
      return 1;
    }
    d->n_replicas++;
  }
  return 0;
}

int cmd_replicate(int argc, char **argv) {
  char *config_path = NULL, *exec_cmd = NULL;
  int no_expand = 0, verbose = 0, force = 0;
  struct flag flags[] = {
      {"config", FLAG_STRING, &config_path, 0},
      {"no-expand-env", FLAG_BOOL, &no_expand, 0},
      {"exec", FLAG_STRING, &exec_cmd, 0},
      {"verbose", FLAG_BOOL, &verbose, 0},
      {"force-takeover", FLAG_BOOL, &force, 0},
  };
  int nf = (int)ARRAY_SIZE(flags);
  int first = flags_parse(flags, nf, argc, argv, usage_text);
  if (first < 0) {
    flags_free(flags, nf);
    return 1;
  }
  int nargs = argc - first;
  int rc = 1;
  struct daemon_opts o;
  memset(&o, 0, sizeof(o));
  if (nargs == 1) {
    fprintf(stderr, "must specify at least one replica URL for %s\n",
            argv[first]);
    goto out;
  }
  if (nargs >= 2) {
    if (config_path) {
      fprintf(stderr, "cannot specify a replica URL and the -config flag\n");
      goto out;
    }
    if (config_from_args(nargs, argv + first, &o.cfg))
      goto out;
    log_setup(&o.cfg.logging);
  } else {
    config_dir_warnings(1);
    config_share_dir_replicas(1); /* (the daemon's databases: db_config) */
    if (cmd_load_config(config_path, no_expand, &o.cfg))
      goto out;
    int explicit_;
    o.config_path = config_default_path(config_path, &explicit_);
    o.expand_env = !no_expand;
  }
  o.verbose = verbose;
  if (verbose) {
    o.cfg.logging.level = LOG_DEBUG;
    log_setup(&o.cfg.logging);
  }
  for (size_t i = 0; force && i < o.cfg.n_dbs; i++)
    for (size_t j = 0; j < o.cfg.dbs[i].n_replicas; j++)
      o.cfg.dbs[i].replicas[j].force_takeover = 1;
  for (size_t i = 0; force && i < o.cfg.n_dirs; i++)
    for (size_t j = 0; j < o.cfg.dirs[i].n_replicas; j++)
      o.cfg.dirs[i].replicas[j].force_takeover = 1;
  if (exec_cmd) {
    free(o.cfg.exec);
    o.cfg.exec = xstrdup(exec_cmd);
  }

  rc = daemon_run(&o);
out:
  config_destroy(&o.cfg);
  free(o.config_path);
  flags_free(flags, nf);
  return rc;
}
